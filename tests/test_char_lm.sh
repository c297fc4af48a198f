#!/usr/bin/env bash
# End-to-end smoke test of the char-lm program on a slice of the corpus:
# training lowers the validation loss, a resumed run is bit-identical to a
# straight one, sample/eval/fine-tune work, and bad input gets one clear
# line and a non-zero exit (never a crash).  Sections 6-10 are issue #7:
# untrusted checkpoints, out of memory, non-finite models and divergence,
# runs lost to late save errors, and --resume keeping the run's options.
#   usage: test_char_lm.sh CHAR_LM CORPUS PYTHON3 CKPT_EDIT
set -u
LM="$1"
CORPUS="$2"
PY="$3"
EDIT="$4"
edit() { "$PY" "$EDIT" "$@"; }
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

# 6. a checkpoint is untrusted input: every metadata value is parsed
# strictly and checked against its tensors before anything is allocated
a="$dir/a.safetensors"
edit "$a" "$dir/v.safetensors" over:data.vocab=-1
expect_error "data.vocab with a negative byte (fine-tune)" 1 \
  "$dir/v.safetensors: metadata 'data.vocab' is '-1" \
  "$LM" train --data "$dir/other.txt" --finetune-from "$dir/v.safetensors" --steps 2 --length 0
edit "$a" "$dir/v.safetensors" over:data.vocab=0a0a
expect_error "data.vocab naming a byte twice" 1 "hex digits naming" \
  "$LM" train --data "$dir/other.txt" --finetune-from "$dir/v.safetensors" --steps 2 --length 0
edit "$dir/t_half.safetensors" "$dir/p.safetensors" train.stream_pos=-5
expect_error "negative train.stream_pos" 1 \
  "$dir/p.safetensors: metadata 'train.stream_pos' is '-5', expected an integer in [0, " \
  "$LM" train --resume "$dir/p.safetensors" --save "$dir/p_out.safetensors"
edit "$dir/half.safetensors" "$dir/s.safetensors" train.step=12abc
expect_error "train.step garbage" 1 "metadata 'train.step' is '12abc', expected an integer in [0, 40]" \
  "$LM" train --resume "$dir/s.safetensors" --save "$dir/s_out.safetensors"
edit "$dir/half.safetensors" "$dir/s.safetensors" train.step=7
expect_error "train.step that disagrees with the optimizer" 1 \
  "metadata 'train.step' is 7, expected 20 (the optimizer's optim.steps)" \
  "$LM" train --resume "$dir/s.safetensors" --save "$dir/s_out.safetensors"
edit "$dir/half.safetensors" "$dir/r.safetensors" train.rng=zz
expect_error "train.rng garbage" 1 "metadata 'train.rng' is 'zz', expected 80 lowercase hex digits" \
  "$LM" train --resume "$dir/r.safetensors" --save "$dir/r_out.safetensors"
edit "$dir/half.safetensors" "$dir/r.safetensors" run.seq=abc
expect_error "run.seq garbage" 1 "metadata 'run.seq' is 'abc', expected an integer between 1 and 100000" \
  "$LM" train --resume "$dir/r.safetensors" --save "$dir/r_out.safetensors"
# sizes that would cost gigabytes are refused from the tensors' shapes
# before allocating (a 1 GB address-space limit proves it outside the
# sanitizers, which need more)
limit=""
[ "${CR_SANITIZE:-none}" = none ] && limit="ulimit -v 1000000;"
edit "$a" "$dir/h.safetensors" model.hidden=8192 model.layers=16
for cmd in "sample --load" "train --resume"; do
  expect_error "model.hidden 8192 with small tensors ($cmd)" 1 \
    "$dir/h.safetensors: tensor 'head.weight' is " \
    bash -c "$limit \"\$@\"" _ "$LM" $cmd "$dir/h.safetensors" --save "$dir/h_out.safetensors"
done
edit "$a" "$dir/m.safetensors" model.vocab=5 shape:embed.weight=5,16 shape:head.weight=5,32 \
  shape:head.bias=5
expect_error "model.vocab that disagrees with data.vocab" 1 \
  "$dir/m.safetensors: metadata 'model.vocab' is 5, expected " \
  "$LM" sample --load "$dir/m.safetensors" --length 20
edit "$a" "$dir/e.safetensors" shape:embed.weight=3,16
expect_error "an embedding of the wrong shape (fine-tune)" 1 \
  "$dir/e.safetensors: tensor 'embed.weight' is [3,16], but its model.* metadata (lstm, vocabulary" \
  "$LM" train --data "$dir/other.txt" --finetune-from "$dir/e.safetensors" --steps 2 --length 0
rev "$dir/small.txt" >"$dir/reversed.txt" # the same characters, another text
expect_error "resume on another text with the same vocabulary" 1 "not the text this run trained on" \
  "$LM" train --resume "$dir/half.safetensors" --data "$dir/reversed.txt" --save "$dir/x.safetensors"

# 7. out of memory is a message and exit 1, never a crash
expect_error "batch buffers too large" 1 "out of memory for the training batch" \
  env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1" \
  "$LM" train --data "$CORPUS" --seq 100000 --batch 100000 --steps 1 --length 0
if [ "${CR_SANITIZE:-none}" = none ]; then
  expect_error "a model too large for the memory" 1 "out of memory" \
    bash -c 'ulimit -v 1000000; "$@"' _ "$LM" train --data "$dir/small.txt" --hidden 8192 \
    --layers 8 --embed 8192 --steps 1 --length 0
fi

# 8. no silent NaN: a non-finite checkpoint is refused naming the tensor;
# a diverging run stops with the step and a hint, and saves nothing
edit "$a" "$dir/n.safetensors" nan:head.bias
expect_error "sample of a NaN model" 1 "$dir/n.safetensors: tensor 'head.bias' holds NaN or infinite values" \
  "$LM" sample --data "$dir/small.txt" --load "$dir/n.safetensors" --length 20
edit "$a" "$dir/n.safetensors" nan:rnn.weight_hh_l0
expect_error "eval of a NaN model" 1 "tensor 'rnn.weight_hh_l0' holds NaN or infinite values" \
  "$LM" eval --data "$dir/small.txt" --load "$dir/n.safetensors"
cp "$a" "$dir/good.safetensors"
expect_error "loss far above the uniform baseline" 1 \
  "step 15: training diverged: the validation loss stayed above 1.5x the uniform baseline" \
  "$LM" train "${common[@]}" --optimizer sgd --lr 100 --clip 0 --steps 60 --eval-every 5 \
  --save "$dir/good.safetensors"
expect_error "a loss that is not finite" 1 "step 2: training diverged: the loss is NaN; stopped without saving (try a lower --lr than 1000, or a --clip)" \
  "$LM" train "${common[@]}" --cell rnn_relu --optimizer sgd --lr 1000 --clip 0 --steps 60 \
  --save "$dir/good.safetensors"
if cmp -s "$a" "$dir/good.safetensors"; then
  pass "a diverged run leaves the good checkpoint as it was"
else
  fail "a diverged run replaced the good checkpoint"
fi

# 9. no run is lost to a late error: the save path is checked before the
# first step; the temporary file is one per target; a file size limit is
# a message
out=$("$LM" train "${common[@]}" --steps 2 --save "$dir/no/such/dir/m.safetensors" 2>&1)
if [ $? = 1 ] && ! echo "$out" | grep -q "^step" &&
   echo "$out" | grep -qF "char-lm: --save: $dir/no/such/dir/m.safetensors: cannot create the temporary file"; then
  pass "a bad --save fails before the first step"
else
  fail "a bad --save: $out"
fi
printf 'DEBRIS OF A KILLED SAVE' >"$dir/.d.safetensors.tmp"
"$LM" train "${common[@]}" --steps 2 --save "$dir/d.safetensors" >/dev/null 2>&1
if [ -s "$dir/d.safetensors" ] && [ -z "$(ls -A "$dir" | grep '\.tmp')" ]; then
  pass "a killed save's temporary file is replaced, not piled up"
else
  fail "temporary files left: $(ls -A "$dir" | grep '\.tmp')"
fi
cp "$a" "$dir/f.safetensors"
out=$(bash -c 'ulimit -f 40; "$@"' _ "$LM" train "${common[@]}" --steps 2 --save "$dir/f.safetensors" 2>&1)
rc=$?
if [ "$rc" = 1 ] && echo "$out" | grep -qF "File too large (the file size limit, ulimit -f, is reached)" &&
   cmp -s "$a" "$dir/f.safetensors" && [ -z "$(ls -A "$dir" | grep '\.tmp')" ]; then
  pass "a file size limit is a message (exit 1), the old file kept"
else
  fail "file size limit (exit $rc): $out"
fi

# 10. --resume alone continues the run: its options come from the file
"$LM" train "${common[@]}" --steps 40 --stop-after 20 --save "$dir/r2.safetensors" >/dev/null 2>&1
"$LM" train --resume "$dir/r2.safetensors" --steps 40 >"$dir/r2.txt" 2>&1
if cmp -s "$dir/straight.safetensors" "$dir/r2.safetensors"; then
  pass "--resume F --steps 40 alone is bit-identical to 40 straight steps"
else
  fail "--resume alone differs from a straight run"; cat "$dir/r2.txt"
fi
"$LM" train "${common[@]}" --tbptt --cell gru --steps 30 --stop-after 15 --save "$dir/t2.safetensors" >/dev/null 2>&1
"$LM" train --resume "$dir/t2.safetensors" --steps 30 >/dev/null 2>&1
if cmp -s "$dir/t_straight.safetensors" "$dir/t2.safetensors"; then
  pass "--resume alone with --tbptt is bit-identical"
else
  fail "--resume alone with --tbptt differs"
fi
# --steps may change: 20 steps, then resumed to 40 (a constant schedule)
"$LM" train "${common[@]}" --schedule constant --steps 40 --save "$dir/c40.safetensors" >/dev/null 2>&1
"$LM" train "${common[@]}" --schedule constant --steps 20 --save "$dir/c20.safetensors" >/dev/null 2>&1
"$LM" train --resume "$dir/c20.safetensors" --steps 40 >/dev/null 2>&1
if cmp -s "$dir/c40.safetensors" "$dir/c20.safetensors"; then
  pass "20 steps + --resume --steps 40 == 40 steps (constant schedule)"
else
  fail "20 + resume to 40 differs from 40 straight"
fi
expect_error "a conflicting flag on resume" 1 \
  "--hidden 64 conflicts with $dir/half.safetensors, which was trained with --hidden 32" \
  "$LM" train --resume "$dir/half.safetensors" --hidden 64
expect_error "a conflicting run option on resume" 1 \
  "--seq 16 conflicts with $dir/half.safetensors, which was trained with --seq 32" \
  "$LM" train --resume "$dir/half.safetensors" --seq 16
expect_error "a flag the run did not use" 1 \
  "--tbptt conflicts with $dir/half.safetensors, which was trained with no --tbptt" \
  "$LM" train --resume "$dir/half.safetensors" --tbptt
expect_error "an architecture flag when fine-tuning" 1 \
  "--cell gru conflicts with $dir/a.safetensors, which was trained with --cell lstm" \
  "$LM" train --data "$dir/other.txt" --finetune-from "$dir/a.safetensors" --cell gru
expect_error "a finished run" 1 "already trained all 40 steps (pass a larger --steps to train on)" \
  "$LM" train --resume "$dir/straight.safetensors" --save "$dir/x.safetensors"
out=$("$LM" sample --load "$a" --length 30 --prime "Th" 2>&1)
if [ $? = 0 ] && [ "${out:0:2}" = "Th" ]; then pass "sample --load F alone finds the text F records"; else fail "sample without --data: $out"; fi
if "$LM" --help | grep -A3 "may be given again" | grep -q -- "--steps"; then
  pass "--help lists the flags that may change on resume"
else
  fail "--help does not list the flags that may change on resume"
fi

# 10. memory-efficient BPTT and anomaly mode change nothing else: the
# checkpoint of a run with --bptt-checkpoint (every K, auto) or
# --bptt-memory is the same file as without (the same gradients, bit for
# bit, 2 layers with dropout, lstm and gru)
for cell in lstm gru; do
  "$LM" train "${common[@]}" --cell $cell --layers 2 --dropout 0.1 --seq 48 --steps 8 \
    --save "$dir/full_$cell.safetensors" >/dev/null 2>&1
  for how in "--bptt-checkpoint 8" "--bptt-checkpoint auto" "--bptt-memory 1" "--detect-anomaly"; do
    # shellcheck disable=SC2086
    out=$("$LM" train "${common[@]}" --cell $cell --layers 2 --dropout 0.1 --seq 48 --steps 8 $how \
          --save "$dir/ck_$cell.safetensors" 2>&1)
    if cmp -s "$dir/full_$cell.safetensors" "$dir/ck_$cell.safetensors"; then
      pass "$cell $how: the same checkpoint as full BPTT"
    else
      fail "$cell $how: the checkpoint differs"; echo "$out" | tail -3
    fi
  done
done
out=$("$LM" train "${common[@]}" --steps 2 --bptt-checkpoint auto 2>&1)
echo "$out" | grep -q "memory-efficient BPTT: segments of [0-9]* steps" &&
  pass "--bptt-checkpoint auto says the segment length it chose" || fail "no segment length: $out"
expect_error "a bad --bptt-checkpoint" 2 "--bptt-checkpoint sqrt: must be one of auto or an integer >= 1" \
  "$LM" train "${common[@]}" --bptt-checkpoint sqrt
expect_error "a budget too small" 1 "checkpoint budget 0.0 MiB is too small for layer 0" \
  "$LM" train "${common[@]}" --steps 2 --bptt-memory 0.01
# anomaly mode names the op where the diverging run first makes a NaN/Inf
expect_error "anomaly mode on a diverging run" 1 "anomaly: " \
  "$LM" train "${common[@]}" --cell rnn_relu --optimizer sgd --lr 1000 --clip 0 --steps 60 --detect-anomaly

echo "$fails failure(s)"
[ "$fails" = 0 ]
