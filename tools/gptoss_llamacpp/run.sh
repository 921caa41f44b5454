#!/bin/sh
# Manual cross-check of the gpt-oss support against llama.cpp (not part of
# `make test`; needs llama.cpp's source and build, and the reference venv):
#  1. llama.cpp's convert_hf_to_gguf.py on tests/fixtures/gptoss and
#     gptoss-mxfp4 writes the same tensors, byte for byte, as `pregate
#     convert --from hf` (names, types, shapes, MXFP4 nibble order);
#  2. on a variant llama.cpp can express (swiglu_limit 7, which llama.cpp
#     hard-codes, and YaRN truncate true, which ggml always does), llama.cpp's
#     llama-perplexity (F32 KV cache, no flash attention) and pregate give the
#     same perplexity over the same windows of a byte-level text.
# Usage, from the repository root after `make`:
#   LLAMA_CPP=/path/to/llama.cpp PY=/path/to/venv/bin/python tools/gptoss_llamacpp/run.sh
set -e
: "${LLAMA_CPP:?set LLAMA_CPP to llama.cpp's checkout (with build/bin)}"
: "${PY:=python3}"
H=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d)
export PYTHONPATH="$LLAMA_CPP/gguf-py" LLAMA_CPP
for f in gptoss gptoss-mxfp4; do
    "$PY" "$H/convert.py" "tests/fixtures/$f" --outtype f32 --outfile "$W/$f-llamacpp.gguf" >/dev/null 2>&1
    build/pregate convert --from hf "tests/fixtures/$f" -o "$W/$f-pregate.gguf" >/dev/null 2>&1
    echo "== $f: llama.cpp's converter vs pregate convert"
    "$PY" "$H/compare_tensors.py" "$W/$f-llamacpp.gguf" "$W/$f-pregate.gguf"
done
"$PY" "$H/variant.py" tests/fixtures/gptoss "$W/variant" >/dev/null 2>&1
"$PY" "$H/convert.py" "$W/variant" --outtype f32 --outfile "$W/variant.gguf" >/dev/null 2>&1
"$PY" "$H/add_vocab.py" "$W/variant.gguf" "$W/variant-vocab.gguf" >/dev/null
"$PY" -c "import random; random.seed(5); open('$W/text.txt','w').write(''.join(random.choice('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?') for _ in range(256)))"
${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -Isrc -o "$W/ppl" "$H/ppl.c" build/libpregate.a \
    -luring -ljansson -lutf8proc -lpcre2-8 -lm -lpthread
for c in 16 32; do
    echo "== perplexity, windows of $c"
    "$LLAMA_CPP/build/bin/llama-perplexity" -m "$W/variant-vocab.gguf" -f "$W/text.txt" -c $c -b $c -t 2 \
        -ctk f32 -ctv f32 -fa off >"$W/lcpp.log" 2>&1 || true
    grep "Final estimate" "$W/lcpp.log" | sed 's/^.*Final/llama.cpp: Final/' || tail -5 "$W/lcpp.log"
    "$W/ppl" "$W/variant-vocab.gguf" "$W/text.txt" $c
done
rm -rf "$W"
