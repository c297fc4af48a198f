#!/usr/bin/env bash
# Install the build into a scratch directory and build the README's example
# against it with pkg-config, as an outside program would; run it.
# Then the same for the custom-op example: an op defined in the user's own
# program, gradchecked and gradgradchecked through the installed library.
#   usage: test_pkgconfig.sh MESON BUILD_DIR DEMO_SOURCE CUSTOM_OP_SOURCE
set -eu
MESON="$1"
BUILD="$2"
DEMO="$3"
CUSTOM="$4"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$MESON" install -C "$BUILD" --no-rebuild --destdir "$d" >/dev/null
pc=$(find "$d" -name chainrule.pc | head -1)
[ -n "$pc" ] || { echo "FAIL: no chainrule.pc installed"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")" PKG_CONFIG_SYSROOT_DIR="$d"
flags=$(pkg-config --cflags --libs chainrule)
echo "pkg-config --cflags --libs chainrule: $flags"
cc -std=c11 -Wall -Wextra -Werror -o "$d/demo" "$DEMO" $flags
libdir=$(dirname "$(find "$d" -name 'libchainrule.so' | head -1)")
out=$(LD_LIBRARY_PATH="$libdir" "$d/demo")
echo "$out"
# dL/dW = (1 - tanh(Wx)^2) x^T for W = [[.1,.2],[.3,.4]], x = [1,2]
echo "$out" | grep -q "tensor(\[\[0.786448, 1.5729\]," || { echo "FAIL: unexpected gradient"; exit 1; }
echo "$out" | grep -q "shape=\[2,2\], dtype=f64" || { echo "FAIL: unexpected shape"; exit 1; }
echo "ok: an outside program builds with pkg-config and computes the gradient"
cc -std=c11 -Wall -Wextra -Werror -o "$d/custom-op" "$CUSTOM" $flags
out=$(LD_LIBRARY_PATH="$libdir" "$d/custom-op")
echo "$out"
echo "$out" | grep -q "^gradcheck of logsumexp: pass" || { echo "FAIL: custom op gradcheck"; exit 1; }
echo "$out" | grep -q "^gradgradcheck of logsumexp: pass" || { echo "FAIL: custom op gradgradcheck"; exit 1; }
echo "$out" | grep -q "gradient through it = \[1, 2, 3\]" || { echo "FAIL: straight-through gradient"; exit 1; }
echo "ok: a custom op defined outside the library is gradchecked through pkg-config"
