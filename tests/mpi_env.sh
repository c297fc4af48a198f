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
return 0
