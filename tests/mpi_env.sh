# mpi_env.sh — sourced by the MPI tests and the benchmark: the mpirun
# command line that works on a developer's machine, as root in CI, and in
# a container.  Returns non-zero (the caller skips, exit 77) when mpirun
# is not installed.  Sets MPIRUN (an array) to
#   mpirun --oversubscribe [--allow-run-as-root] --mca btl self,vader
#     -x OMPI_MCA_btl_vader_single_copy_mechanism=none
# --oversubscribe: more ranks than cores (3 ranks on a 2-core machine).
# --allow-run-as-root: OpenMPI refuses root without it (CI runs as root).
# btl self,vader: one machine, shared memory only (no TCP interface probing).
# single_copy_mechanism none: vader's default, CMA (process_vm_readv), is
# not permitted in many containers (it needs ptrace rights); copying
# through the shared segment works everywhere (the benchmark keeps CMA).
# MPIRUN_BIN overrides the program.
mpirun_bin="${MPIRUN_BIN:-$(command -v mpirun || command -v mpiexec || true)}"
if [ -z "$mpirun_bin" ]; then
  echo "SKIP: mpirun not found (Debian: apt-get install openmpi-bin libopenmpi-dev)"
  return 1
fi
MPIRUN=("$mpirun_bin" --oversubscribe --mca btl self,vader)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
export OMPI_MCA_btl_vader_single_copy_mechanism="${OMPI_MCA_btl_vader_single_copy_mechanism:-none}"
MPIRUN+=(-x OMPI_MCA_btl_vader_single_copy_mechanism)
# Under AddressSanitizer: Open MPI keeps allocations past MPI_Finalize;
# tests/lsan_mpi.supp suppresses leaks allocated inside its libraries, and
# full unwinding lets those frames be seen (harmless in other builds).
mpi_env_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$mpi_env_dir/lsan_mpi.supp"
return 0
