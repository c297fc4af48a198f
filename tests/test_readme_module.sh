#!/usr/bin/env bash
# The README's "Models as modules" example is examples/sine_forecaster.c,
# word for word, and it works: the loss falls, the checkpoint it writes
# holds the model under PyTorch's names, the optimizer and the generator.
#   usage: test_readme_module.sh README SOURCE PROGRAM PYTHON3
set -u
README="$1" SRC="$2" PROG="$3" PY="$4"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
# the first ```c block after the section's heading
awk '/^## Models as modules/ {s = 1} s && /^```c$/ {c = 1; next} c && /^```$/ {exit} c' "$README" >"$dir/readme.c"
if [ -s "$dir/readme.c" ] && diff -u "$SRC" "$dir/readme.c"; then
  echo "ok   the README's example is $(basename "$SRC") ($(wc -l <"$SRC") lines)"
else
  echo "FAIL the README's example differs from $SRC"; fails=$((fails + 1))
fi
out=$(cd "$dir" && "$PROG" 2>&1)
rc=$?
first=$(echo "$out" | sed -n 's/^step 0: mse //p')
last=$(echo "$out" | sed -n 's/^step 300: mse //p')
if [ "$rc" = 0 ] && [ -n "$first" ] && [ -n "$last" ] && awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < a / 20)}'; then
  echo "ok   the forecaster learns: mse $first -> $last"
else
  echo "FAIL the forecaster (exit $rc):"; echo "$out"; fails=$((fails + 1))
fi
keys=$("$PY" -c '
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
h = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
print(" ".join(k for k in h if k != "__metadata__"), "|", "rng.state" in h["__metadata__"])
' "$dir/forecaster.safetensors" 2>&1)
want="rnn.weight_ih_l0 rnn.weight_hh_l0 rnn.bias_ih_l0 rnn.bias_hh_l0 head.weight head.bias optim.lr optim.base_lr"
if [ "${keys#"$want"}" != "$keys" ] && [ "${keys##*| }" = True ]; then
  echo "ok   forecaster.safetensors: $keys"
else
  echo "FAIL forecaster.safetensors holds: $keys"; fails=$((fails + 1))
fi
[ "$fails" = 0 ]
