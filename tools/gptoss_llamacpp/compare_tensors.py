# Tensor by tensor: same names, types, shapes and bytes in two GGUF files;
# prints the metadata keys only one of them has.
import sys
import numpy as np
from gguf import GGUFReader

a, b = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
bad = sorted(set(ta) ^ set(tb))
for n in sorted(set(ta) & set(tb)):
    x, y = ta[n], tb[n]
    if not (x.tensor_type == y.tensor_type and list(x.shape) == list(y.shape)
            and np.array_equal(np.asarray(x.data).view(np.uint8), np.asarray(y.data).view(np.uint8))):
        bad.append(n)
print(f"{len(set(ta) & set(tb))} common tensors; differ or missing: {bad or 'none'}")
ka, kb = set(a.fields), set(b.fields)
print("keys only in", sys.argv[1], sorted(k for k in ka - kb if not k.startswith("GGUF.")))
print("keys only in", sys.argv[2], sorted(k for k in kb - ka if not k.startswith("GGUF.")))
sys.exit(1 if bad else 0)
