#!/usr/bin/env bash
# The bptt-teach report renders in a real browser: headless Chromium opens
# DIR/index.html and takes a screenshot, which must show text and the
# pictures (png_check.py: enough non-white pixels, and enough strongly
# coloured ones, which only the plots and the graph have).  Skipped (exit
# 77) only when chromium is not installed; .ci/install-deps installs it.
#   usage: test_bptt_page.sh BPTT_TEACH PYTHON PNG_CHECK
set -u
BT="$1"
PY="$2"
CHECK="$3"
command -v chromium >/dev/null || { echo "SKIP: chromium is not installed (apt-get install chromium)"; exit 77; }
command -v gnuplot >/dev/null && command -v dot >/dev/null ||
  { echo "FAIL: gnuplot and dot are needed for the pictures"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$BT" --out "$dir/r" --quick >"$dir/out.txt" 2>&1 || { cat "$dir/out.txt"; echo "FAIL: bptt-teach"; exit 1; }
# the flags keep Chromium off the network (without them it stalls trying)
timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$dir/profile" --hide-scrollbars --force-device-scale-factor=0.5 \
  --window-size=1100,9000 --screenshot="$dir/shot.png" "file://$dir/r/index.html" \
  >"$dir/chromium.txt" 2>&1
rc=$?
if [ "$rc" != 0 ] || [ ! -s "$dir/shot.png" ]; then
  tail -20 "$dir/chromium.txt"
  echo "FAIL: chromium exit $rc, no screenshot"
  exit 1
fi
echo "screenshot: $(wc -c <"$dir/shot.png") bytes"
"$PY" "$CHECK" "$dir/shot.png" 0.03 0.005 || { echo "FAIL: the screenshot looks blank"; exit 1; }
# a page whose pictures are missing must fail the same check
PATH=/nonexistent "$BT" --out "$dir/bare" --quick >/dev/null 2>&1
timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$dir/profile" --hide-scrollbars --force-device-scale-factor=0.5 \
  --window-size=1100,9000 --screenshot="$dir/bare.png" "file://$dir/bare/index.html" \
  >"$dir/chromium.txt" 2>&1
if "$PY" "$CHECK" "$dir/bare.png" 0.03 0.005; then
  echo "FAIL: the check passes a page without pictures"
  exit 1
fi
echo "ok: the report renders in Chromium with its pictures (and the check rejects a page without them)"
