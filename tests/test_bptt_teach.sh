#!/usr/bin/env bash
# bptt-teach end to end: --out DIR writes the report (index.html, every
# picture with its CSV and gnuplot script, the graph) and prints its key
# figures, the double sum agreeing with backward to 1e-12; without gnuplot
# and dot on PATH it still writes the data and says what is missing; the
# text output without --out shows dL/dh_t from backward (no nan); bad
# options get one line and exit 2.
#   usage: test_bptt_teach.sh BPTT_TEACH
set -u
BT="$1"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }

# 1. the full report
out=$("$BT" --out "$dir/r" 2>&1)
rc=$?
echo "$out"
[ "$rc" = 0 ] && pass "--out exits 0" || fail "--out exit $rc"
x=$(echo "$out" | sed -n 's/.*double sum vs backward: max abs difference \([0-9.e+-]*\).*/\1/p')
if [ -n "$x" ] && awk -v x="$x" 'BEGIN{exit !(x <= 1e-12)}'; then
  pass "double sum vs backward: $x <= 1e-12"
else
  fail "double sum vs backward: '$x'"
fi
for f in index.html heatmap.csv flow.csv explode.csv clip.csv anomaly.csv \
         heatmap.gp flow.gp explode.gp clip.gp anomaly.gp graph.dot; do
  [ -s "$dir/r/$f" ] || fail "missing $f"
done
pass "CSV, gnuplot and dot files written"
# one row per term of the double sum: T(T+1)/2 = 300, plus the header
rows=$(wc -l <"$dir/r/heatmap.csv")
[ "$rows" = 301 ] && pass "heatmap.csv has 300 terms" || fail "heatmap.csv has $rows lines"
echo "$out" | grep -q "anomaly mode stopped the diverging run at step [0-9]*.*op 'mse'" &&
  pass "anomaly names the op" || fail "anomaly line"
grep -q "anomaly: forward op mse" "$dir/r/index.html" && pass "the anomaly message is on the page" ||
  fail "anomaly message not on the page"
# the graph: names, a cluster per step (each once), shared weights outside
for s in weight_hh_l0 weight_ih_l0 h_2 c_1 'time step t = 0' 'time step t = 2'; do
  grep -q "$s" "$dir/r/graph.dot" || fail "graph.dot lacks '$s'"
done
n=$(grep -c 'label="time step t = 1"' "$dir/r/graph.dot")
[ "$n" = 1 ] && pass "graph.dot: one cluster per step, names shown" || fail "graph.dot: $n clusters for t = 1"
# the pictures, where the tools are installed (CI installs them)
if command -v gnuplot >/dev/null && command -v dot >/dev/null; then
  for p in heatmap flow explode clip anomaly graph; do
    [ -s "$dir/r/$p.png" ] || fail "$p.png not drawn"
    grep -q "src=\"$p.png\"" "$dir/r/index.html" || fail "index.html does not show $p.png"
  done
  [ -s "$dir/r/graph.svg" ] || fail "graph.svg not drawn"
  head -c 8 "$dir/r/heatmap.png" | od -c | grep -q 'P   N   G' && pass "pictures drawn and on the page" ||
    fail "heatmap.png is not a PNG"
else
  echo "skip pictures: gnuplot or dot not installed"
fi

# 2. without the tools: the data, and a line saying what is missing
out=$(PATH=/nonexistent "$BT" --out "$dir/bare" --quick 2>&1)
rc=$?
if [ "$rc" = 0 ] && echo "$out" | grep -q "missing: gnuplot and dot (Graphviz)" &&
   [ -s "$dir/bare/flow.csv" ] && [ -s "$dir/bare/graph.dot" ] && [ ! -e "$dir/bare/flow.png" ] &&
   grep -q "Not drawn" "$dir/bare/index.html"; then
  pass "without gnuplot and dot: data written, missing tools named"
else
  fail "without tools (exit $rc): $out"
fi

# 3. the text output: backward's dL/dh_t next to the hand-derived one
out=$(cd "$dir" && "$BT" 2>&1)
rc=$?
if [ "$rc" = 0 ] && ! echo "$out" | grep -qi nan && echo "$out" | grep -q "dL/dw: by hand" &&
   [ -s "$dir/bptt.dot" ]; then
  pass "text output"
else
  fail "text output (exit $rc): $out"
fi

# 4. bad options
out=$("$BT" --bogus 2>&1)
[ $? = 2 ] && echo "$out" | grep -q "unknown or bad option '--bogus'" && pass "bad option" ||
  fail "bad option: $out"
out=$("$BT" --out "$dir/nope/deeper" 2>&1)
rc=$?
[ "$rc" = 1 ] && echo "$out" | grep -q "cannot create" && pass "unwritable directory" ||
  fail "unwritable directory (exit $rc): $out"

echo "$fails failure(s)"
[ "$fails" = 0 ]
