#!/bin/sh
# gpu_check.sh - what the CUDA backend still needs a GPU to show (issue 10),
# in stages that each fit a 10-minute run on a lent GPU machine:
#
#   sh tools/gpu_check.sh build       make CUDA=1: pregate and the device tests
#   sh tools/gpu_check.sh kernels     every device kernel against the CPU (test_dev, per-type tolerances)
#   sh tools/gpu_check.sh models      the device pass against the CPU pass on the fixture families (those
#                                     with float weights: the CPU rounds activations of quantized dot
#                                     products through Q8_0), every offload mode bit-identical to the
#                                     GPU's resident run (test_devfwd), and greedy text against the CPU's
#   sh tools/gpu_check.sh sanitizer   compute-sanitizer (memcheck, racecheck, synccheck) on short runs
#   sh tools/gpu_check.sh bench       pre-gating against resident and on demand on Mixtral- and
#                                     Qwen3-30B-A3B-shaped synthetic models, --expert-mem 25%
#
# OUT (default /tmp/gpu_check) receives the logs and the bench JSON.
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
J=$(nproc)
B=build-cuda
stage=${1:-all}

build() {
    make CUDA=1 -j"$J" $B/pregate $B/tests/test_dev $B/tests/test_devfwd 2>&1 | tail -5
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
}

kernels() { PREGATE_TEST_DEV=cuda $B/tests/test_dev 2>&1 | tee "$OUT/test_dev.log" | tail -20; }

models() {
    PREGATE_TEST_DEV=cuda $B/tests/test_devfwd 2>&1 | tee "$OUT/test_devfwd.log" | tail -25
    for m in models/demo-moe.gguf models/demo-moe-pregated-q8_0.gguf; do
        $B/pregate run -m $m -p "Elizabeth looked at her sister and said" -n 64 --temp 0 2>/dev/null > "$OUT/cpu.txt"
        $B/pregate run -m $m -p "Elizabeth looked at her sister and said" -n 64 --temp 0 --backend cuda \
            2>/dev/null > "$OUT/cuda.txt"
        cmp -s "$OUT/cpu.txt" "$OUT/cuda.txt" && echo "$m: greedy text identical" || echo "$m: greedy text DIFFERS"
    done
}

sanitizer() {
    CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    for tool in memcheck racecheck synccheck; do
        echo "== $tool"
        "$CS" --tool $tool --error-exitcode 9 $B/pregate run -m models/demo-moe.gguf -p "Elizabeth said" -n 8 \
            --temp 0 --backend cuda --expert-mem 30% --prefetch pregate 2>&1 | tail -4
    done
    "$CS" --tool memcheck --leak-check full --error-exitcode 9 $B/pregate run -m models/demo-moe.gguf \
        -p "Elizabeth said" -n 8 --temp 0 --backend cuda 2>&1 | tail -4
}

bench() {
    # full layer sizes, as many layers as keep a file under ~16 GB (the machine's disk is 64 GB)
    [ -f "$OUT/q30.gguf" ] || $B/pregate synth --preset qwen3-30b-a3b --layers 12 --type Q8_0 -o "$OUT/q30.gguf"
    [ -f "$OUT/mix.gguf" ] || $B/pregate synth --preset mixtral-8x7b --layers 6 --type Q8_0 -o "$OUT/mix.gguf"
    for m in q30 mix; do
        for link in none pcie4; do
            echo "== $m, link $link"
            $B/pregate bench -m "$OUT/$m.gguf" --backend cuda --expert-mem 25% --link $link -n 32 --repeat 3 \
                --modes resident,none,next-layer-all,pregate,oracle --json "$OUT/bench-$m-$link.json" 2>&1 | tail -9
        done
    done
}

case $stage in
build) build ;;
kernels) kernels ;;
models) models ;;
sanitizer) sanitizer ;;
bench) bench ;;
all) build; kernels; models; sanitizer; bench ;;
*) echo "usage: sh tools/gpu_check.sh build|kernels|models|sanitizer|bench|all" >&2; exit 2 ;;
esac
