#!/usr/bin/env bash
# Run one libFuzzer target for a bounded time and report it in one line:
#   fuzz-NAME: EXECS executions in SECS s, cov COV, ft FT, corpus N, FINDINGS finding(s)
#   usage: run_fuzz.sh FUZZER CORPUS_DIR REGRESSIONS_DIR [SECONDS]
# (SECONDS defaults to $FUZZ_SECONDS, else 300; FUZZ_RUNS=N stops after N
# executions instead.)  The committed corpus is read, never written: new
# inputs go to a scratch copy.  A finding (crash, sanitizer report, leak,
# timeout, out of memory) is kept under $FUZZ_ARTIFACTS (default: a
# scratch directory, printed) and makes the exit status 1; commit it to
# REGRESSIONS_DIR so the normal suite replays it.
set -u
fuzzer="$1" corpus="$2" regressions="$3"
secs="${4:-${FUZZ_SECONDS:-300}}"
name=$(basename "$fuzzer")
work=$(mktemp -d)
artifacts="${FUZZ_ARTIFACTS:-$work/artifacts}"
mkdir -p "$work/corpus" "$artifacts"
trap 'rm -rf "$work/corpus"' EXIT
dirs=("$work/corpus" "$corpus")
[ -d "$regressions" ] && dirs+=("$regressions")
limit=(-max_total_time="$secs")
[ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1"
start=$(date +%s)
"$fuzzer" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -close_fd_mask=2 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "${dirs[@]}" >"$work/log.txt" 2>&1
rc=$?
end=$(date +%s)
execs=$(awk '/^stat::number_of_executed_units:/{print $2}' "$work/log.txt")
last=$(grep -E '^#[0-9]+' "$work/log.txt" | tail -1)
cov=$(echo "$last" | grep -o 'cov: [0-9]*' | cut -d' ' -f2)
ft=$(echo "$last" | grep -o 'ft: [0-9]*' | cut -d' ' -f2)
corp=$(echo "$last" | grep -o 'corp: [0-9]*' | cut -d' ' -f2)
findings=$(find "$artifacts" -type f | wc -l)
[ "$rc" != 0 ] && [ "$findings" = 0 ] && findings=1
echo "$name: ${execs:-?} executions in $((end - start)) s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, $findings finding(s)"
if [ "$findings" != 0 ]; then
  grep -E 'ERROR|runtime error|check failed|SUMMARY|Test unit written' "$work/log.txt" | head -20
  echo "$name: findings kept in $artifacts (commit them to $regressions/)"
  exit 1
fi
rm -rf "$work"
