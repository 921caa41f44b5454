#!/bin/sh
# The laptop case: a model file larger than the memory the process may use,
# experts read from the real disk, the whole process inside a memory cgroup.
# Compares pregate (experts offloaded, pre-gated, O_DIRECT) with llama.cpp
# reading the same GGUF through mmap, under the same limit, interleaved,
# dropping the page cache before every run.
#
#   tools/laptop_case.sh MODEL.gguf LIMIT_MIB EXPERT_MEM LLAMA_BENCH [N_TOKENS] [REPEATS]
#
# PREGATE_ARGS adds flags to pregate's run (e.g. "--io-threads 4").
# Needs root and cgroup v1's memory controller at /sys/fs/cgroup/memory.
# LLAMA_BENCH is a llama.cpp `llama-bench` binary built on this machine
# (never committed here). Prints one line per run and the medians.
#
# Both decode tokens that do not repeat: llama-bench feeds random tokens,
# and pregate samples at temperature 1, which on random weights is close
# to uniform over the vocabulary. (Greedy decoding of random weights loops
# over a few tokens whose repeated routing would flatter pregate's cache.)
set -eu
model=$1; limit_mib=$2; expert_mem=$3; llama_bench=$4; n=${5:-32}; reps=${6:-3}
pregate=${PREGATE:-build/pregate}
cg=/sys/fs/cgroup/memory/pregate-laptop
[ -d /sys/fs/cgroup/memory ] || { echo "no cgroup v1 memory controller" >&2; exit 1; }
mkdir -p "$cg"
echo $((limit_mib * 1048576)) > "$cg/memory.limit_in_bytes"
[ -f "$cg/memory.memsw.limit_in_bytes" ] && echo $((limit_mib * 1048576)) > "$cg/memory.memsw.limit_in_bytes" 2>/dev/null || true
size=$(stat -c %s "$model")
echo "model $model: $((size >> 20)) MiB; cgroup limit $limit_mib MiB ($(awk "BEGIN{printf \"%.2f\", $size/1048576/$limit_mib}")x smaller); $n tokens; $reps repeats"
incg() { sh -c 'echo $$ > "$0/cgroup.procs"; shift 0; exec "$@"' "$cg" "$@"; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
out=$(mktemp)
pg_rates=""; ll_rates=""
for r in $(seq 1 "$reps"); do
    drop
    incg "$pregate" run -m "$model" -p "It was a bright cold day" -n "$n" --temp 1 --seed 1 --ignore-eos -t 2 \
        --expert-mem "$expert_mem" --prefetch pregate --link none --store direct --stats ${PREGATE_ARGS:-} >/dev/null 2>"$out" || { cat "$out" >&2; exit 1; }
    pg=$(sed -n 's/.*generated [0-9]* tokens, \([0-9.]*\) tok\/s.*/\1/p' "$out")
    peak=$(cat "$cg/memory.max_usage_in_bytes"); echo 0 > "$cg/memory.max_usage_in_bytes" || true
    echo "run $r pregate   (expert-mem $expert_mem): $pg tok/s, cgroup peak $((peak >> 20)) MiB; $(grep 'hit rate' "$out" | sed 's/^pregate: //')"
    drop
    incg "$llama_bench" -m "$model" -p 0 -n "$n" -t 2 -r 1 -o csv >"$out" 2>/dev/null || { echo "llama-bench failed" >&2; exit 1; }
    ll=$(tail -n 1 "$out" | awk -F, '{gsub(/"/, "", $0); for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) v = $i; } END {print v}')
    ll=$(python3 -c "import csv,sys; r=list(csv.DictReader(open('$out'))); print(r[-1]['avg_ts'])" 2>/dev/null || echo "$ll")
    peak=$(cat "$cg/memory.max_usage_in_bytes"); echo 0 > "$cg/memory.max_usage_in_bytes" || true
    echo "run $r llama.cpp (mmap): $ll tok/s, cgroup peak $((peak >> 20)) MiB"
    pg_rates="$pg_rates $pg"; ll_rates="$ll_rates $ll"
done
med() { echo "$@" | tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
p=$(med $pg_rates); l=$(med $ll_rates)
echo "median decode tok/s: pregate $p, llama.cpp $l, ratio $(awk "BEGIN{printf \"%.2f\", $p/$l}")x"
rm -f "$out"
rmdir "$cg" 2>/dev/null || true
