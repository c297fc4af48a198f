#!/bin/sh
# run_all.sh -- the whole comparison in one command: install the peers if
# missing, build, then run the FMA-peak probe, chainrule, oneDNN and PyTorch
# interleaved and print one table (compare.py; tests/bench/README.md).
#
#   tests/bench/run_all.sh [--build-dir DIR] [--no-build] [--no-install] [compare.py options]
#
#   --build-dir DIR  the meson build directory (default: build-bench in the
#                    source tree; set up as a release build if absent)
#   --no-build       use DIR as it is (the meson benchmark target does this)
#   --no-install     never call apt-get
# Every other option goes to compare.py: --rounds N (3), --quick, --cpu 0,
# --cpus2 0,1, --no-torch, --no-dnnl, --no-threads, --cells lstm,gru,...,
# --reps N, --min-time S, --embed N (0: E = H), --json FILE.
set -eu

src=$(cd "$(dirname "$0")/../.." && pwd)
build="$src/build-bench"
do_build=1
do_install=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --no-install) do_install=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) break ;;
  esac
done

# 1. the peers: Debian packages, installed only when missing
pkgs="libdnnl-dev python3-torch libopenblas0-pthread"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
    missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$do_install" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "run_all: installing$missing" >&2
    # wait for another apt/dpkg run instead of failing on its lock
    apt-get -o DPkg::Lock::Timeout=900 update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q \
      --no-install-recommends $missing >&2
  else
    echo "run_all: missing$missing: not installing (need root and apt-get, and no" \
         "--no-install); those columns will read n/a" >&2
  fi
fi

# 2. the programs
if [ "$do_build" = 1 ]; then
  if [ ! -d "$build" ]; then
    meson setup "$build" "$src" -Dbuildtype=release >&2
  elif [ ! -x "$build/tests/bench/bench-dnnl" ] &&
       dpkg-query -W -f='${Status}' libdnnl-dev 2>/dev/null | grep -q 'install ok installed'; then
    meson setup --reconfigure "$build" "$src" >&2 # pick up a newly installed oneDNN
  fi
  ninja -C "$build" >&2
elif [ ! -x "$build/tests/bench/bench-dnnl" ]; then
  echo "run_all: $build has no bench-dnnl (oneDNN was not found when it was set up):" \
       "the oneDNN column will read n/a; 'meson setup --reconfigure $build' builds it" >&2
fi

# 3. the comparison (Debian's python3 is the one that can import torch)
py=/usr/bin/python3
[ -x "$py" ] || py=python3
exec "$py" "$src/tests/bench/compare.py" --build-dir "$build" --python "$py" "$@"
