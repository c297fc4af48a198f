#!/usr/bin/env bash
# End-to-end smoke test of the char-lm program on a slice of the corpus:
# training lowers the validation loss, a resumed run is bit-identical to a
# straight one, sample/eval/fine-tune work, and bad input gets one clear
# line and a non-zero exit (never a crash).
#   usage: test_char_lm.sh CHAR_LM CORPUS
set -u
LM="$1"
CORPUS="$2"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }

head -c 60000 "$CORPUS" >"$dir/small.txt"
tail -c 30000 "$CORPUS" >"$dir/other.txt"
common=(--data "$dir/small.txt" --hidden 32 --embed 16 --seq 32 --batch 8 --length 0 --eval-chars 0)

# 1. training lowers the validation loss (first vs last validation line)
"$LM" train "${common[@]}" --steps 60 --eval-every 20 --save "$dir/a.safetensors" >"$dir/train.txt" 2>&1
rc=$?
first=$(grep -o 'validation [0-9][0-9.]*' "$dir/train.txt" | head -1 | cut -d' ' -f2)
last=$(grep -o 'validation [0-9][0-9.]*' "$dir/train.txt" | tail -1 | cut -d' ' -f2)
if [ "$rc" = 0 ] && [ -n "$first" ] && [ -n "$last" ] && awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < a - 0.3)}'; then
  pass "training: validation $first -> $last bits/char"
else
  fail "training (rc $rc, validation '$first' -> '$last')"; cat "$dir/train.txt"
fi

# 2. exact resume: 40 straight steps == 20 + save + resume + 20, byte for byte
"$LM" train "${common[@]}" --steps 40 --save "$dir/straight.safetensors" >/dev/null 2>&1
"$LM" train "${common[@]}" --steps 40 --stop-after 20 --save "$dir/half.safetensors" >/dev/null 2>&1
cp "$dir/half.safetensors" "$dir/half_copy.safetensors"
"$LM" train "${common[@]}" --steps 40 --resume "$dir/half.safetensors" --save "$dir/resumed.safetensors" >"$dir/resume.txt" 2>&1
if cmp -s "$dir/straight.safetensors" "$dir/resumed.safetensors"; then
  pass "resume is bit-identical to a straight run"
else
  fail "resume differs from a straight run"; cat "$dir/resume.txt"
fi
# the same with truncated BPTT (state carried across batches is saved too)
"$LM" train "${common[@]}" --tbptt --cell gru --steps 30 --save "$dir/t_straight.safetensors" >/dev/null 2>&1
"$LM" train "${common[@]}" --tbptt --cell gru --steps 30 --stop-after 15 --save "$dir/t_half.safetensors" >/dev/null 2>&1
"$LM" train "${common[@]}" --tbptt --cell gru --steps 30 --resume "$dir/t_half.safetensors" --save "$dir/t_resumed.safetensors" >/dev/null 2>&1
if cmp -s "$dir/t_straight.safetensors" "$dir/t_resumed.safetensors"; then
  pass "resume with --tbptt is bit-identical"
else
  fail "resume with --tbptt differs"
fi

# 3. sample and eval from a checkpoint
out=$("$LM" sample --data "$dir/small.txt" --load "$dir/a.safetensors" --length 50 --prime "Th" 2>&1)
if [ $? = 0 ] && [ "${#out}" -ge 50 ] && [ "${out:0:2}" = "Th" ]; then pass "sample"; else fail "sample: $out"; fi
out=$("$LM" eval --data "$dir/small.txt" --load "$dir/a.safetensors" 2>&1)
if [ $? = 0 ] && echo "$out" | grep -q "bits/char"; then pass "eval"; else fail "eval: $out"; fi

# 4. fine-tuning on another text (another vocabulary), recurrent layers frozen
out=$("$LM" train --data "$dir/other.txt" --finetune-from "$dir/a.safetensors" --freeze-recurrent \
      --seq 32 --batch 8 --steps 10 --length 0 --eval-chars 2000 2>&1)
if [ $? = 0 ] && echo "$out" | grep -q "recurrent layers frozen"; then pass "fine-tune"; else fail "fine-tune: $out"; fi

# 5. bad input: one clear line, non-zero exit, no crash (exit < 128)
expect_error() { # name, expected exit, expected text, command...
  local name="$1" want_rc="$2" text="$3"
  shift 3
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" = "$want_rc" ] && echo "$out" | grep -qF -- "$text"; then
    pass "error: $name"
  else
    fail "error: $name (exit $rc, want $want_rc; output: $out)"
  fi
}
: >"$dir/empty.txt"
expect_error "unknown flag" 2 "unknown option '--bogus'" "$LM" train --bogus
expect_error "unknown command" 2 "unknown command 'fly'" "$LM" fly
expect_error "missing file" 1 "cannot read '$dir/nope.txt'" "$LM" train --data "$dir/nope.txt"
expect_error "empty file" 1 "is empty" "$LM" train --data "$dir/empty.txt"
expect_error "impossible size" 2 "--hidden 0: must be an integer between 1 and 8192" "$LM" train --hidden 0
expect_error "not a number" 2 "--lr abc: must be a number" "$LM" train --lr abc
expect_error "sequence longer than the text" 1 "needs more text" "$LM" train --data "$dir/small.txt" --seq 90000
expect_error "sample without a model" 2 "sample needs --load" "$LM" sample
expect_error "checkpoint of another text" 1 "vocabulary differs" \
  "$LM" sample --data "$dir/other.txt" --load "$dir/a.safetensors"
head -c 300 "$dir/a.safetensors" >"$dir/truncated.safetensors"
expect_error "truncated checkpoint" 1 "truncated.safetensors" \
  "$LM" sample --data "$dir/small.txt" --load "$dir/truncated.safetensors"
fixture="$(dirname "$CORPUS")/../../tests/fixtures/rnn/lstm_l1.safetensors"
expect_error "a safetensors file that is no char-lm checkpoint" 1 "not a char-lm checkpoint" \
  "$LM" train "${common[@]}" --steps 30 --resume "$fixture"
expect_error "a missing checkpoint" 1 "$dir/missing.safetensors" \
  "$LM" sample --data "$dir/small.txt" --load "$dir/missing.safetensors"
# a failed save leaves no partial file and reports the path
expect_error "save into a missing directory" 1 "$dir/no/such/dir/m.safetensors" \
  "$LM" train "${common[@]}" --steps 2 --save "$dir/no/such/dir/m.safetensors"
if cmp -s "$dir/half.safetensors" "$dir/half_copy.safetensors"; then
  pass "resuming leaves the checkpoint it read unchanged"
else
  fail "the checkpoint read by --resume changed"
fi

echo "$fails failure(s)"
[ "$fails" = 0 ]
