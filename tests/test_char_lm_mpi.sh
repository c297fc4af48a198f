#!/usr/bin/env bash
# char-lm under mpirun (issue #12): data-parallel training gives the
# one-process result, resumes across rank counts, is reproducible bit for
# bit with --dist-deterministic, and ends with a clear message (never a
# hang) when a rank's model differs, a rank dies or stops, or rank 0
# cannot save.  Skipped (77) without mpirun.
#   usage: test_char_lm_mpi.sh CHAR_LM CORPUS PYTHON3 CKPT_COMPARE
set -u
LM="$1"
CORPUS="$2"
PY="$3"
COMPARE="$4"
. "$(dirname "$0")/mpi_env.sh" || exit 77
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }
# every mpirun is bounded: a hang fails the test instead of stalling it
run() { timeout 120 "${MPIRUN[@]}" "$@"; }
# the model tensors of two checkpoints within 1e-10 relative
close() { # name, a, b
  local out
  out=$("$PY" "$COMPARE" "$2" "$3" --tol 1e-10 2>&1)
  if [ $? = 0 ]; then pass "$1: $out"; else fail "$1: $out"; fi
}

head -c 60000 "$CORPUS" >"$dir/small.txt"
common=(--data "$dir/small.txt" --hidden 32 --embed 16 --seq 32 --batch 8 --length 0
        --eval-chars 0 --dtype f64)

# 1. two ranks == one process (f64, 1e-10 relative): random windows,
# truncated BPTT (state carried per rank, gathered for the file), and a
# batch that does not divide (7 = 4 + 3, and 3 + 2 + 2 on three ranks)
"$LM" train "${common[@]}" --steps 40 --save "$dir/s1.safetensors" >/dev/null 2>&1
run -np 2 "$LM" train "${common[@]}" --steps 40 --save "$dir/s2.safetensors" >"$dir/s2.txt" 2>&1
close "2 ranks vs 1 process, 40 steps" "$dir/s2.safetensors" "$dir/s1.safetensors"
tb=(--tbptt --cell gru --steps 30)
"$LM" train "${common[@]}" "${tb[@]}" --save "$dir/t1.safetensors" >/dev/null 2>&1
run -np 2 "$LM" train "${common[@]}" "${tb[@]}" --save "$dir/t2.safetensors" >/dev/null 2>&1
close "2 ranks vs 1 process with --tbptt" "$dir/t2.safetensors" "$dir/t1.safetensors"
"$LM" train "${common[@]}" --batch 7 --steps 30 --save "$dir/u1.safetensors" >/dev/null 2>&1
run -np 2 "$LM" train "${common[@]}" --batch 7 --steps 30 --save "$dir/u2.safetensors" >/dev/null 2>&1
close "--batch 7 on 2 ranks (4 + 3, weighted) vs 1 process" "$dir/u2.safetensors" "$dir/u1.safetensors"
run -np 3 "$LM" train "${common[@]}" --batch 7 --steps 30 --dist-deterministic \
  --save "$dir/u3.safetensors" >/dev/null 2>&1
close "--batch 7 on 3 ranks (3 + 2 + 2) vs 1 process" "$dir/u3.safetensors" "$dir/u1.safetensors"

# rank 0 alone prints: one header, one result line, and the all-reduce's cost
if [ "$(grep -c '^trained 40 steps' "$dir/s2.txt")" = 1 ] &&
   grep -q "^distributed: 2 ranks (MPI), batch 8 as 4 sequences per rank" "$dir/s2.txt" &&
   grep -q "^all-reduce on 2 ranks: .* ms per step" "$dir/s2.txt" &&
   [ "$(grep -c '^chainrule char-lm' "$dir/s2.txt")" = 1 ]; then
  pass "rank 0 prints the progress, once"
else
  fail "output of 2 ranks:"; cat "$dir/s2.txt"
fi

# 2. resume on any number of ranks: 20 steps on 1 process, 20 more on 2
# ranks (and the other way round) == 40 steps on 1 process
"$LM" train "${common[@]}" --steps 40 --stop-after 20 --save "$dir/h1.safetensors" >/dev/null 2>&1
run -np 2 "$LM" train --resume "$dir/h1.safetensors" --save "$dir/r12.safetensors" >"$dir/r12.txt" 2>&1
close "1-process checkpoint resumed on 2 ranks" "$dir/r12.safetensors" "$dir/s1.safetensors"
run -np 2 "$LM" train "${common[@]}" --steps 40 --stop-after 20 --save "$dir/h2.safetensors" >/dev/null 2>&1
"$LM" train --resume "$dir/h2.safetensors" --save "$dir/r21.safetensors" >/dev/null 2>&1
close "2-rank checkpoint resumed on 1 process" "$dir/r21.safetensors" "$dir/s1.safetensors"
"$LM" train "${common[@]}" "${tb[@]}" --stop-after 15 --save "$dir/th1.safetensors" >/dev/null 2>&1
run -np 2 "$LM" train --resume "$dir/th1.safetensors" --save "$dir/tr12.safetensors" >/dev/null 2>&1
close "--tbptt: 1-process checkpoint resumed on 2 ranks (carried rows split)" \
  "$dir/tr12.safetensors" "$dir/t1.safetensors"

# 3. --dist-deterministic: the same bits on every run, and 20 + resume 20
# on 2 ranks == 40 straight on 2 ranks, byte for byte
det=(--dist-deterministic --steps 40)
run -np 2 "$LM" train "${common[@]}" "${det[@]}" --save "$dir/d1.safetensors" >/dev/null 2>&1
run -np 2 "$LM" train "${common[@]}" "${det[@]}" --save "$dir/d2.safetensors" >/dev/null 2>&1
run -np 2 "$LM" train "${common[@]}" "${det[@]}" --stop-after 20 --save "$dir/dh.safetensors" >/dev/null 2>&1
run -np 2 "$LM" train --resume "$dir/dh.safetensors" --dist-deterministic >/dev/null 2>&1
if [ -s "$dir/d1.safetensors" ] && cmp -s "$dir/d1.safetensors" "$dir/d2.safetensors"; then
  pass "--dist-deterministic: two runs on 2 ranks are byte-identical"
else
  fail "--dist-deterministic: two runs differ"
fi
if cmp -s "$dir/d1.safetensors" "$dir/dh.safetensors"; then
  pass "--dist-deterministic: 20 + resume 20 == 40 straight, byte for byte"
else
  fail "--dist-deterministic: resumed run differs"
fi

# 4. failures: one clear message, a non-zero exit, no hang
expect() { # name, text, seconds, mpirun arguments...
  local name="$1" text="$2" limit="$3"
  shift 3
  local start=$(date +%s) out rc
  out=$(run "$@" 2>&1)
  rc=$?
  local took=$(($(date +%s) - start))
  if [ "$rc" != 0 ] && [ "$took" -lt "$limit" ] &&
     echo "$out" | grep -qF -- "$text"; then
    pass "$name (exit $rc after ${took} s)"
  else
    fail "$name (exit $rc after ${took} s; want '$text' within $limit s):"; echo "$out" | grep -v '^step'
  fi
}
f32=(--data "$dir/small.txt" --hidden 32 --embed 16 --seq 32 --batch 8 --length 0 --eval-chars 0)
# MPMD: rank 1 is started with another --hidden
expect "a rank with another model" \
  "dist_check_params: rank 1 of 2 differs from rank 0: parameter 1 is 'rnn.weight_ih_l0' f32 [128,16] on rank 0 but 'rnn.weight_ih_l0' f32 [192,16] on rank 1" 30 \
  -np 1 "$LM" train "${f32[@]}" --steps 30 : -np 1 "$LM" train "${f32[@]}" --steps 30 --hidden 48
expect "--batch smaller than the ranks" \
  "--batch 1 on 2 ranks: every rank needs at least one sequence of every batch" 30 \
  -np 2 "$LM" train "${f32[@]}" --batch 1 --steps 5
expect "rank 0 cannot save" "char-lm: rank 0: --save: $dir/no/such/dir/x.safetensors" 30 \
  -np 2 "$LM" train "${f32[@]}" --steps 5 --save "$dir/no/such/dir/x.safetensors"
# rank 1 gets a signal during training (its process is the char-lm: exec)
cat >"$dir/signal.sh" <<'EOF'
#!/usr/bin/env bash
if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then (sleep "$AFTER"; kill -"$SIG" $$) & fi
exec "$@"
EOF
chmod +x "$dir/signal.sh"
export SIG=KILL AFTER=2
expect "a rank killed during training" "process rank 1 with PID" 30 \
  -x SIG -x AFTER -np 2 "$dir/signal.sh" "$LM" train "${f32[@]}" --steps 100000
export SIG=STOP
expect "a rank stopped during training (--dist-timeout 3)" \
  "s for the other ranks: one died, stopped or is not calling it; exiting with status 124" 30 \
  -x SIG -x AFTER -np 2 "$dir/signal.sh" "$LM" train "${f32[@]}" --steps 100000 --dist-timeout 3

echo "$fails failure(s)"
[ "$fails" = 0 ]
