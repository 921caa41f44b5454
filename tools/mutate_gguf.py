#!/usr/bin/env python3
"""Mutation testing of the model loaders and the forward pass on damaged GGUFs.

libFuzzer's targets cover the GGUF container (fuzz_gguf) and config.json
(fuzz_config); this covers what comes after: each family's hyperparameter
keys, the tensor table against them, and a forward pass over whatever the
loader accepts. It takes valid GGUFs (e.g. the fixtures after `pregate
convert`), overwrites a few bytes of their header, metadata and tensor table
(never the tensor data), and runs `pregate inspect` and then `pregate run`
on each mutant with a sanitizer build. A mutant that makes pregate crash,
abort, hang or print a sanitizer report is kept with its output.

    make SANITIZE=1 build-asan/pregate
    for f in deepseek3 gptoss switch; do build/pregate convert --from hf tests/fixtures/$f -o seeds/$f.gguf; done
    python3 tools/mutate_gguf.py --pregate build-asan/pregate --seeds seeds --out finds --seconds 600 --seed 1

Needs the `gguf` Python package (to find where the tensor data starts); run
by hand, not in CI. Every mutant must either load or be refused with a
message; nothing else is acceptable.
"""
import argparse
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

from gguf import GGUFReader

INTS = [0, 1, 2, 3, 7, 8, 16, 31, 32, 33, 64, 0x7f, 0x80, 0xff, 1024, 0xffff, 65536,
        0x7fffffff, 0x80000000, 0xffffffff]


def mutate(rng, data, end):
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 3, 5])):
        p = rng.randrange(0, end)
        r = rng.random()
        if r < 0.5:
            b[p] = rng.randrange(256)
        elif r < 0.9 and p + 4 <= end:
            b[p:p + 4] = struct.pack("<I", rng.choice(INTS))
        else:
            b[p] ^= 1 << rng.randrange(8)
    return bytes(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pregate", required=True, help="a pregate built with SANITIZE=1")
    ap.add_argument("--seeds", required=True, help="folder of valid .gguf files")
    ap.add_argument("--out", required=True, help="folder for the mutants that fail")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    seeds = []
    for f in sorted(os.listdir(a.seeds)):
        if f.endswith(".gguf"):
            p = os.path.join(a.seeds, f)
            seeds.append((f, open(p, "rb").read(), GGUFReader(p).data_offset))
    if not seeds:
        sys.exit(f"no .gguf files in {a.seeds}")
    os.makedirs(a.out, exist_ok=True)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    work = tempfile.mkdtemp()
    path = os.path.join(work, "m.gguf")
    t0, n, ran, found = time.time(), 0, 0, 0
    while time.time() - t0 < a.seconds:
        name, data, end = rng.choice(seeds)
        b = mutate(rng, data, end)
        with open(path, "wb") as f:
            f.write(b)
        for cmd in (["inspect", "-m", path], ["run", "-m", path, "--tokens", "1,2,3", "-n", "2", "--temp", "0", "-t", "1"]):
            try:
                p = subprocess.run([a.pregate] + cmd, capture_output=True, timeout=60, env=env)
                rc, err = p.returncode, p.stderr
            except subprocess.TimeoutExpired:
                rc, err = -1, b"timeout after 60 s"
            if rc < 0 or rc >= 128 or b"Sanitizer" in err or b"runtime error" in err or b"timeout" in err:
                found += 1
                keep = os.path.join(a.out, f"{name}-{a.seed}-{n}")
                with open(keep + ".gguf", "wb") as f:
                    f.write(b)
                with open(keep + ".txt", "wb") as f:
                    f.write(" ".join(cmd).encode() + f"\nexit {rc}\n".encode() + err[-4000:])
                break
            if rc != 0:
                break  # refused with a message: as it should be
            ran += cmd[0] == "run"
        n += 1
    print(f"{n} mutants of {len(seeds)} files, {ran} loaded and ran, {found} failures kept in {a.out}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
