#!/usr/bin/env bash
# bench-dist — data-parallel char-lm on MPI (issue #12): tokens/s of the
# training steps (validation excluded) of an LSTM at hidden 256 and 512 on
# 1 process (1 thread), 1 process (2 threads) and 2 ranks (1 thread each,
# one core each), the 2-rank scaling over 1 rank, and the all-reduce's
# share of a step as char-lm measures it (waiting for the slower rank +
# reducing the gradient buckets).
#   usage: bench_dist.sh CHAR_LM CORPUS [STEPS_256 STEPS_512]
# Skipped (77) without mpirun.  Every run trains the same model from the
# same seed, so the losses of a row agree (the 2-rank run to rounding).
set -u
LM="$1"
CORPUS="$2"
S256="${3:-60}"
S512="${4:-30}"
. "$(dirname "$0")/../mpi_env.sh" || exit 77
# the benchmark keeps shared-memory single copy (CMA) where it is allowed
unset OMPI_MCA_btl_vader_single_copy_mechanism
MPI=("$mpirun_bin" --oversubscribe --mca btl self,vader --bind-to core)
[ "$(id -u)" = 0 ] && MPI+=(--allow-run-as-root)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

cpu=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)
echo "bench-dist: char-lm lstm, --seq 64 --batch 32 (2048 tokens a step), f32, on $cpu, $(nproc) cores"
echo "tokens/s of the training steps alone (all-reduce included, validation excluded)"
printf '%-7s %-6s %14s %14s %14s %9s %9s %12s %10s\n' hidden steps "1 proc 1 thr" "1 proc 2 thr" \
  "2 ranks" "2r / 1p" "effic." "allreduce ms" "% of step"
fail=0
steps_alone() { sed -n 's/.*the steps alone \([0-9]*\) tokens\/s.*/\1/p' "$1" | head -1; }
for h in 256 512; do
  n=$S256
  [ "$h" = 512 ] && n=$S512
  args=(train --data "$CORPUS" --cell lstm --hidden "$h" --embed 64 --seq 64 --batch 32 --steps "$n"
        --length 0 --eval-chars 2000 --eval-every 100000 --seed 1)
  taskset -c 0 "$LM" "${args[@]}" --threads 1 >"$dir/p1.txt" 2>&1 || { cat "$dir/p1.txt"; fail=1; continue; }
  "$LM" "${args[@]}" --threads 2 >"$dir/p2.txt" 2>&1 || { cat "$dir/p2.txt"; fail=1; continue; }
  "${MPI[@]}" -np 2 "$LM" "${args[@]}" --threads 1 >"$dir/r2.txt" 2>&1 || { cat "$dir/r2.txt"; fail=1; continue; }
  a=$(steps_alone "$dir/p1.txt") b=$(steps_alone "$dir/p2.txt") c=$(steps_alone "$dir/r2.txt")
  ar=$(sed -n 's/^all-reduce on 2 ranks: \([0-9.]*\) ms per step.*/\1/p' "$dir/r2.txt")
  pct=$(sed -n 's/.*(\([0-9.]*\)% of the .* ms step).*/\1/p' "$dir/r2.txt")
  if [ -z "$a" ] || [ -z "$b" ] || [ -z "$c" ] || [ -z "$ar" ]; then
    echo "hidden $h: could not read the runs' figures"; tail -3 "$dir"/*.txt; fail=1; continue
  fi
  awk -v h="$h" -v n="$n" -v a="$a" -v b="$b" -v c="$c" -v ar="$ar" -v pct="$pct" 'BEGIN {
    printf "%-7s %-6s %14d %14d %14d %8.2fx %8.0f%% %12s %9s%%\n", h, n, a, b, c, c / a,
           50 * c / a, ar, pct }'
  grep -h "^all-reduce" "$dir/r2.txt" | sed 's/^/  /'
done
echo "2r / 1p: 2 ranks over 1 process on 1 core; effic.: that ratio / 2"
exit $fail
