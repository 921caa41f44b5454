#!/bin/sh
# The fast-tier budget is a real bound on memory: with --expert-mem X and
# --link none (real reads from the file, O_DIRECT, so the page cache hides
# nothing), the peak resident set of `pregate run` stays within
#   dense bytes + X + KV cache + 64 MiB
# on a synthetic model whose experts are 24x X. The same run with every
# expert resident (mmap) must exceed that bound, or the check proves nothing.
BUILD=${BUILD:-build}
P=$BUILD/pregate
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
name=test_offload_rss
fail() { echo "FAIL $name: $*" >&2; exit 1; }
"$P" synth --arch qwen3moe --layers 4 --dim 256 --experts 64 --top-k 4 --expert-ffn 1024 --heads 4 --kv-heads 2 \
    --vocab 512 --type F16 --seed 7 -o "$dir/m.gguf" 2>"$dir/synth.err" || fail "synth: $(cat "$dir/synth.err")"
dense=$("$P" inspect "$dir/m.gguf" | sed -n 's/^dense bytes: *\([0-9]*\).*/\1/p')
experts=$("$P" inspect "$dir/m.gguf" | sed -n 's/^expert bytes: *\([0-9]*\).*/\1/p')
[ -n "$dense" ] && [ -n "$experts" ] || fail "cannot read byte counts from inspect"
X=$((16 * 1048576))
ctx=64
kv=$((2 * 4 * ctx * 128 * 4)) # K and V, 4 layers, ctx positions, 2 KV heads x 64, float32
bound=$((dense + X + kv + 64 * 1048576))
peak() { sed -n 's/.*"peak_rss_bytes": *\([0-9]*\).*/\1/p' "$1" | head -n 1; }
"$P" run -m "$dir/m.gguf" -p "It was a truth" -n 24 --temp 0 -c $ctx --expert-mem $X --prefetch pregate \
    --link none --store direct --stats-json "$dir/off.json" >/dev/null 2>"$dir/off.err" || fail "offloaded run: $(tail -n 3 "$dir/off.err")"
"$P" run -m "$dir/m.gguf" -p "It was a truth" -n 24 --temp 0 -c $ctx --stats-json "$dir/res.json" >/dev/null 2>"$dir/res.err" \
    || fail "resident run: $(tail -n 3 "$dir/res.err")"
off=$(peak "$dir/off.json"); res=$(peak "$dir/res.json")
echo "  experts $((experts >> 20)) MiB, X $((X >> 20)) MiB, bound $((bound >> 20)) MiB: offloaded peak RSS $((off >> 20)) MiB, resident $((res >> 20)) MiB" >&2
[ "$experts" -ge $((4 * X)) ] || fail "model not 4x larger than X"
[ "$off" -le "$bound" ] || fail "offloaded peak RSS $off exceeds dense + X + KV + 64 MiB = $bound"
[ "$res" -gt "$bound" ] || fail "resident peak RSS $res does not exceed the bound $bound: the check is not sensitive"
echo "ok   $name" >&2
