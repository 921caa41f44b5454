#!/usr/bin/env python3
"""Writes tests/fixtures/quant/<TYPE>.bin: quantized blocks of each format and
what gguf-py (gguf.quants, an implementation pregate did not write) dequantizes
them to. tests/test_quants.c checks pg_dequantize_row_ref against them.

Blocks come from gguf.quants' quantizer where it has one (Q4_0..Q8_0, TQ1_0,
TQ2_0, MXFP4), applied to random floats and to edge cases (zeros, constants,
a lone extreme, a block mixing huge and tiny values); the source floats are
stored too, so the test can compare pregate's quantizer with gguf-py's. For
the other formats the block bytes are random with sane scales, plus edge
blocks: all-zero bytes, all-ones bytes, the largest finite half scale,
negative and subnormal scales.

File layout (little-endian):
    char magic[4] = "PGQF"; uint32 type (GGML id); uint32 n (elements);
    uint32 has_src;
    block bytes of n elements; float32 dequantized[n]; float32 src[n] if has_src

Usage (any Python with gguf==0.19.0 and numpy): python tools/make_quant_fixtures.py
"""
import os
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "quant")

QUANTIZABLE = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.TQ1_0, T.TQ2_0, T.MXFP4]
CRAFTED = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS]

# byte offsets of the half-precision scales in each crafted block
HALF_FIELDS = {
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.IQ4_NL: [0],
    T.IQ4_XS: [0],
}


def edge_floats(blck, rng):
    """Edge-case blocks of floats (finite, some extreme)."""
    blocks = []
    blocks.append(np.zeros(blck, np.float32))                       # all zero
    blocks.append(np.full(blck, 3.25, np.float32))                  # constant
    b = np.zeros(blck, np.float32); b[blck // 3] = -60000.0         # lone extreme
    blocks.append(b)
    b = rng.standard_normal(blck).astype(np.float32) * 1e-6         # tiny and huge mixed
    b[::7] = 30000.0 * np.sign(rng.standard_normal(len(b[::7])))
    blocks.append(b)
    b = np.linspace(-1.0, 1.0, blck, dtype=np.float32)              # exact ties on a grid
    blocks.append(b)
    return np.concatenate(blocks)


def crafted_blocks(t, nblocks, rng):
    """Random block bytes with sane scales, then edge blocks."""
    blck, size = GGML_QUANT_SIZES[t]
    raw = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
    for off in HALF_FIELDS[t]:
        d = (rng.uniform(1e-3, 5e-2, nblocks) * rng.choice([-1, 1], nblocks)).astype(np.float16)
        raw[:, off:off + 2] = d.view(np.uint8).reshape(nblocks, 2)
    edges = []
    edges.append(np.zeros(size, np.uint8))                           # zero scales, zero quants
    edges.append(np.full(size, 0xFF, np.uint8))                      # every quant at its max; scales = NaN half
    for off in HALF_FIELDS[t]:                                       # ... so set them to the largest half
        edges[-1][off:off + 2] = np.array([65504.0], np.float16).view(np.uint8)
    b = rng.integers(0, 256, size, dtype=np.uint8)                   # negative and subnormal scales
    for k, off in enumerate(HALF_FIELDS[t]):
        b[off:off + 2] = np.array([-2.0 ** -24 if k == 0 else -0.5], np.float16).view(np.uint8)
    edges.append(b)
    b = np.zeros(size, np.uint8)                                     # quants zero, scales large
    for off in HALF_FIELDS[t]:
        b[off:off + 2] = np.array([1000.0], np.float16).view(np.uint8)
    edges.append(b)
    return np.concatenate([raw, np.stack(edges)])


def write(t, blocks, deq, src, suffix=""):
    n = deq.size
    path = os.path.join(OUT, f"{t.name}{suffix}.bin")
    with open(path, "wb") as f:
        f.write(b"PGQF")
        f.write(struct.pack("<III", int(t), n, 1 if src is not None else 0))
        f.write(blocks.tobytes())
        f.write(deq.astype("<f4").tobytes())
        if src is not None:
            f.write(src.astype("<f4").tobytes())
    return os.path.getsize(path)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240607)
    total = 0
    for t in QUANTIZABLE:
        blck, size = GGML_QUANT_SIZES[t]
        n_random = max(4 * blck, 512)
        x = (rng.standard_normal(n_random) * rng.uniform(0.01, 3.0)).astype(np.float32)
        x = np.concatenate([x, edge_floats(blck, rng)])
        blocks = quants.quantize(x.reshape(1, -1), t).reshape(-1)
        deq = quants.dequantize(blocks.reshape(1, -1), t).reshape(-1).astype(np.float32)
        total += write(t, blocks, deq, x)
    for t in CRAFTED:
        blck, size = GGML_QUANT_SIZES[t]
        nblocks = max(4, 512 // blck)
        blocks = crafted_blocks(t, nblocks, rng).reshape(-1)
        deq = quants.dequantize(blocks.reshape(1, -1), t).reshape(-1).astype(np.float32)
        if not np.all(np.isfinite(deq)):
            sys.exit(f"{t.name}: non-finite dequantized values")
        total += write(t, blocks, deq, None)
    # MXFP4 scales the quantizer does not reach: E8M0 exponents 0..3 (the
    # subnormal results of 2^(e-128)), 127, 200 and 254
    es = np.array([0, 1, 2, 3, 127, 200, 254], np.uint8)
    qs = rng.integers(0, 256, size=(len(es), 16), dtype=np.uint8)
    qs[-1] &= 0xBB  # e = 254: only codes of magnitude <= 1.5, so 2^126 * 3 stays finite
    blocks = np.concatenate([es.reshape(-1, 1), qs], axis=1).reshape(-1)
    deq = quants.dequantize(blocks.reshape(1, -1), T.MXFP4).reshape(-1).astype(np.float32)
    total += write(T.MXFP4, blocks, deq, None, "-e8m0")
    print(f"wrote {len(QUANTIZABLE) + len(CRAFTED) + 1} fixtures, {total} bytes, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
