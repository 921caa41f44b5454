#!/bin/sh
# pregate trace + pregate plot on the demo model: the SVG has one heatmap
# cell per (layer, expert) and one strip cell per (token, layer, selected
# expert), and it renders to a PNG (rsvg-convert, from librsvg2-bin).
BUILD=${BUILD:-build}
P=$BUILD/pregate
name=test_plot
[ -f models/demo-moe.gguf ] || { echo "SKIP $name: models/demo-moe.gguf missing" >&2; exit 0; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL $name: $*" >&2; exit 1; }
"$P" trace -m models/demo-moe.gguf -f tests/fixtures/demo-moe/heldout-slice.txt --max-tokens 300 -o "$dir/t.trace" \
    2>"$dir/err" || fail "trace: $(tail -n 2 "$dir/err")"
"$P" plot "$dir/t.trace" -o "$dir/t.svg" --tokens 20 2>"$dir/err" || fail "plot: $(tail -n 2 "$dir/err")"
head -c 4 "$dir/t.svg" | grep -q '<svg' || fail "not an SVG"
tail -n 1 "$dir/t.svg" | grep -q '</svg>' || fail "SVG not closed"
heat=$(grep -c '<title>layer [0-9]* expert' "$dir/t.svg")
strip=$(grep -c '<title>token [0-9]* layer' "$dir/t.svg")
[ "$heat" -eq 48 ] || fail "heatmap has $heat cells, expected 6 layers x 8 experts = 48"
[ "$strip" -eq 240 ] || fail "routing strip has $strip cells, expected 20 tokens x 6 layers x 2 = 240"
"$P" plot "$dir/missing.trace" -o "$dir/x.svg" 2>"$dir/err" && fail "a missing trace was accepted"
[ "$(wc -l < "$dir/err")" -eq 1 ] || fail "error is not one line"
if command -v rsvg-convert >/dev/null 2>&1; then
    rsvg-convert "$dir/t.svg" -o "$dir/t.png" 2>"$dir/err" || fail "rsvg-convert: $(cat "$dir/err")"
    [ -s "$dir/t.png" ] || fail "empty PNG"
    echo "  rendered $(wc -c < "$dir/t.png") bytes of PNG" >&2
else
    echo "  rsvg-convert not installed: SVG checked, not rendered" >&2
fi
echo "ok   $name" >&2
