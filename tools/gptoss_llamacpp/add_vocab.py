import sys, numpy as np

import gguf
src, dst = sys.argv[1], sys.argv[2]
r = gguf.GGUFReader(src)
arch = "gpt-oss"
w = gguf.GGUFWriter(dst, arch)
for k, f in r.fields.items():
    if k.startswith("GGUF.") or k == "general.architecture":
        continue
    vt = f.types[0]
    if vt == gguf.GGUFValueType.STRING:
        w.add_string(k, bytes(f.parts[f.data[0]]).decode())
    elif vt == gguf.GGUFValueType.ARRAY:
        continue
    else:
        w.add_key_value(k, f.parts[f.data[0]][0], vt)
def b2u():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, [chr(c) for c in cs]))
m = b2u()
toks = [m[b] for b in range(256)] + ["ĠĠ"] + [f"<|x{i}|>" for i in range(257, 512)]
w.add_tokenizer_model("gpt2")
w.add_tokenizer_pre("default")
w.add_token_list(toks)
w.add_token_types([1] * 256 + [1] + [4] * 255)
w.add_token_merges(["Ġ Ġ"])
w.add_bos_token_id(1)
w.add_eos_token_id(2)
w.add_add_bos_token(False)
for t in r.tensors:
    w.add_tensor(t.name, np.asarray(t.data), raw_shape=list(reversed([int(x) for x in t.shape])), raw_dtype=t.tensor_type)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("ok")
