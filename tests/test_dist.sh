#!/usr/bin/env bash
# libchainrule_mpi's tests (test_dist.c) under mpirun on 1, 2 and 3 ranks,
# and its watchdog: a rank that never joins a collective ends the job
# within the timeout, with a message naming the waiting rank.  Skipped
# (77) when mpirun is not installed.
#   usage: test_dist.sh TEST_DIST
set -u
T="$1"
. "$(dirname "$0")/mpi_env.sh" || exit 77
fails=0
for n in 1 2 3; do
  out=$(timeout 120 "${MPIRUN[@]}" -np "$n" "$T" 2>&1)
  rc=$?
  # every rank prints cmocka's summary
  passed=$(echo "$out" | grep -c '^\[  PASSED  \]')
  if [ "$rc" = 0 ] && [ "$passed" = "$n" ]; then
    echo "ok   $n rank(s): $(echo "$out" | grep -m1 '^\[  PASSED  \]')"
  else
    echo "FAIL $n rank(s) (exit $rc)"; echo "$out"; fails=$((fails + 1))
  fi
done
start=$(date +%s%N)
out=$(timeout 60 "${MPIRUN[@]}" -np 2 "$T" --watchdog 2>&1)
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
if [ "$rc" != 0 ] && [ "$ms" -lt 20000 ] &&
   echo "$out" | grep -qF "cr_dist: rank 0 of 2: dist_sum (the opening MPI_Allreduce) has waited 0.5 s for the other ranks: one died, stopped or is not calling it; exiting with status 124"; then
  echo "ok   a rank that never joins: the watchdog ended the job after $ms ms (mpirun exit $rc)"
else
  echo "FAIL watchdog (exit $rc after $ms ms)"; echo "$out"; fails=$((fails + 1))
fi
echo "$fails failure(s)"
[ "$fails" = 0 ]
