#!/usr/bin/env bash
# The task examples end to end, each in a short run: it trains, prints its
# metric line, and beats chance or the baselines where a short run can;
# bad flags get one line naming the flag and exit status 1 (never a crash).
#   usage: test_examples.sh seq2seq|forecast|temporal-order|adding-problem BINARY
# CR_EXAMPLE_WRAPPER (e.g. "valgrind --error-exitcode=99 -q") runs every
# invocation of BINARY under it: meson's --wrapper would watch bash only.
set -u
NAME="$1"
BIN="$2"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }
# shellcheck disable=SC2086  # the wrapper is words
run() { ${CR_EXAMPLE_WRAPPER:-} "$BIN" "$@"; }

# a sanitizer or valgrind report anywhere fails the check it came from
clean() {
  if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:|==[0-9]+== [A-Z]" "$1"; then
    cat "$1"
    return 1
  fi
  return 0
}

# ok_run LABEL OUTFILE ARGS...: exit 0 and no report
ok_run() {
  local label=$1 out=$2
  shift 2
  run "$@" >"$out" 2>"$out.err"
  local rc=$?
  if [ "$rc" = 0 ] && clean "$out.err"; then
    return 0
  fi
  fail "$label: exit $rc"
  cat "$out" "$out.err"
  return 1
}

# bad LABEL PATTERN ARGS...: exit 1, one line on stderr matching PATTERN
bad() {
  local label=$1 pattern=$2
  shift 2
  run "$@" >"$dir/bad.out" 2>"$dir/bad.err"
  local rc=$?
  if [ "$rc" = 1 ] && grep -qE -e "$pattern" "$dir/bad.err" && clean "$dir/bad.err"; then
    pass "$label: $(head -1 "$dir/bad.err")"
  else
    fail "$label: exit $rc, expected 1 and /$pattern/"
    cat "$dir/bad.err"
  fi
}

# a number from the line of FILE matching PATTERN: the SED expression's \1
num() { grep -E "$2" "$1" | tail -1 | sed -E "s/$3/\1/"; }
above() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 > b + 0) }'; }

case "$NAME" in
seq2seq)
  small=(--steps 300 --hidden 32 --batch 32 --lr 0.01 --test 200)
  if ok_run "train" "$dir/train.txt" "${small[@]}" --save "$dir/m.safetensors"; then
    exact=$(num "$dir/train.txt" '^exact match' '^exact match ([0-9.]+)%.*')
    chars=$(num "$dir/train.txt" '^exact match' '.*\(([0-9.]+)% of characters\).*')
    # chance: 1 in ~36,500 dates; the right dashes and commonest digits alone give ~35% of characters
    if above "$exact" 20 && above "$chars" 60; then
      pass "300 steps: exact match $exact% ($chars% of characters) on held-out dates"
    else
      fail "300 steps: exact match '$exact'%, '$chars'% of characters (want > 20, > 60)"
      cat "$dir/train.txt"
    fi
    if grep -qE '^  .* -> [0-9-]{10}  ' "$dir/train.txt"; then
      pass "decoded examples printed"
    else
      fail "no decoded examples"
    fi
    # the saved model evaluates to the same figure
    if ok_run "load" "$dir/load.txt" --load "$dir/m.safetensors" --test 200 &&
      [ "$(grep '^exact match' "$dir/load.txt")" = "$(grep '^exact match' "$dir/train.txt")" ]; then
      pass "--load: $(grep '^exact match' "$dir/load.txt")"
    else
      fail "--load gives another result"
      cat "$dir/load.txt"
    fi
    bad "--load with another --hidden" "hidden size 32, not --hidden 64" \
      --load "$dir/m.safetensors" --hidden 64
  fi
  bad "unknown flag" "unknown option '--bogus'" --bogus 1
  bad "--steps not a number" "--steps '12x': expected an integer" --steps 12x
  bad "--hidden odd" "--hidden 33: must be even" --hidden 33
  bad "--lr missing" "--lr \(missing\): expected a number" --lr
  bad "--load a missing file" "seq2seq: .*nonexistent" --load "$dir/nonexistent.safetensors"
  printf 'not a checkpoint' >"$dir/junk.safetensors"
  bad "--load a bad file" "seq2seq: .*junk.safetensors" --load "$dir/junk.safetensors"
  ;;

forecast)
  # the default run is short (5 ensemble members of 300 steps): it must
  # beat both baselines one step and 1-11 steps ahead
  if ok_run "default run" "$dir/run.txt" --plot "$dir/f.png"; then
    for what in "one step" "1-11 steps"; do
      line=$(grep -E "^  $what" "$dir/run.txt")
      if echo "$line" | grep -q "LSTM best"; then
        pass "$what: $(echo "$line" | awk '{print "LSTM MSE", $5, "naive", $7, "seasonal naive", $9}')"
      else
        fail "$what: the LSTM does not beat both baselines: $line"
      fi
    done
    rows=$(grep -cE '^[0-9]{4},' "$dir/f.csv" 2>/dev/null)
    if [ "$(head -1 "$dir/f.csv")" = "year,actual,lstm_1,naive_1,seasonal_1,lstm_multi,naive_multi,seasonal_multi,origin" ] &&
      [ "$rows" = 62 ] && [ -s "$dir/f.png.gp" ]; then
      pass "CSV ($rows rows) and gnuplot script written"
    else
      fail "CSV or script missing or malformed ($rows rows)"
    fi
    if command -v gnuplot >/dev/null; then
      if [ "$(head -c 8 "$dir/f.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then
        pass "gnuplot drew a PNG"
      else
        fail "no PNG from gnuplot"
      fi
    else
      echo "skip the picture: gnuplot is not installed"
    fi
  fi
  # without gnuplot: a message, the data, exit 0
  if PATH=/nonexistent ok_run "without gnuplot" "$dir/nognu.txt" --steps 20 --ensemble 1 \
    --plot "$dir/g.svg" && grep -q "gnuplot is not installed" "$dir/nognu.txt" && [ -s "$dir/g.csv" ]; then
    pass "without gnuplot: $(grep -o 'gnuplot is not installed: the data is in [^ ]*' "$dir/nognu.txt" | sed "s|$dir/||")"
  else
    fail "without gnuplot"
    cat "$dir/nognu.txt"
  fi
  bad "unknown flag" "unknown option '--bogus'" --bogus
  bad "--plot of another kind" "--plot x.jpg: expected a file name ending in .png or .svg" --plot x.jpg
  bad "--window too short" "--window 1: expected an integer in \[2, 10000\]" --window 1
  bad "--horizon longer than the test" "--horizon 50 is longer than the --test 40" --horizon 50
  bad "--data a missing file" "cannot open .*nope.csv" --data "$dir/nope.csv"
  printf 'year,value\n1700,5\n1702,x\n' >"$dir/broken.csv"
  bad "--data malformed" "broken.csv:3: expected YEAR,VALUE" --data "$dir/broken.csv"
  bad "--augment negative" "--augment -1: expected a number in \[0, 3\]" --augment -1
  ;;

temporal-order)
  if ok_run "train" "$dir/run.txt" --steps 200 --min-len 10 --max-len 20 --test 500; then
    line=$(grep '^held-out accuracy' "$dir/run.txt")
    lstm=$(echo "$line" | sed -E 's/.*: lstm ([0-9.]+)%.*/\1/')
    bag=$(echo "$line" | sed -E 's/.*bag of inputs ([0-9.]+)%.*/\1/')
    # chance is 16.7%; the bag of inputs cannot do better (same multiset in every class)
    if above "$lstm" 60 && ! above "$bag" 28; then
      pass "$line"
    else
      fail "accuracy: lstm '$lstm'%, bag '$bag'% (want > 60 and <= 28): $line"
    fi
  fi
  bad "unknown cell" "--cell foo: expected lstm, gru" --cell foo
  bad "--min-len above --max-len" "--min-len 30 is above --max-len 20" --min-len 30 --max-len 20
  bad "--steps 0" "--steps 0: expected an integer" --steps 0
  bad "unknown flag" "unknown option '-x'" -x
  ;;

adding-problem)
  if ok_run "train" "$dir/run.txt" --steps 400 --lengths 10; then
    ok=1
    for cell in lstm gru; do
      mse=$(grep -E "^$cell " "$dir/run.txt" | sed -E 's/.*\(([0-9.]+)\).*/\1/')
      # always answering the mean (1) gives mse 1/6 = 0.167
      above 0.12 "$mse" || ok=0
      echo "   $cell mse $mse"
    done
    if [ "$ok" = 1 ]; then pass "gated cells below the mean's mse 0.167 after 400 steps"; else fail "mse"; cat "$dir/run.txt"; fi
  fi
  bad "--lengths with a trailing comma" "--lengths 10,: expected up to 8 numbers" --lengths 10,
  bad "--hidden 0" "--hidden 0: expected an integer in \[1, 4096\]" --hidden 0
  bad "unknown flag" "unknown option '--cell'" --cell lstm
  ;;

*)
  fail "unknown example '$NAME'"
  ;;
esac

echo "$fails failure(s)"
# the script's status (no `exit`: bash leaks under valgrind with an EXIT trap set)
[ "$fails" = 0 ]
