#!/usr/bin/env bash
# The shared library exports the public API and nothing else:
#   - its soname is libchainrule.so.SOVERSION;
#   - every defined dynamic symbol is a public name (cr_ and a letter) in the
#     version node CHAINRULE_SOVERSION; no cr__ helper and nothing else is
#     exported, apart from the node itself and the linker's own symbols;
#   - every function and object declared in the public headers is exported,
#     and every exported name is declared there (a non-static cr_ function
#     missing from the headers would leak into the ABI).
# The declared functions come from the compiler itself (gcc -aux-info lists
# every prototype of a translation unit that includes all the headers, with
# the file it came from); objects from the preprocessed headers' extern
# declarations without parentheses.
#   usage: test_exports.sh NM READELF LIBRARY.so INCLUDE_DIR GENERATED_INCLUDE_DIR SOVERSION CC...
# The same check serves libchainrule_mpi (chainrule/dist.h), through the
# environment (defaults: libchainrule):
#   CR_EXPORTS_LIB      the library's name: chainrule_mpi (soname libchainrule_mpi.so.N)
#   CR_EXPORTS_NODE     its version node without the number: CHAINRULE_MPI
#   CR_EXPORTS_HEADERS  its headers, relative to INCLUDE_DIR: chainrule/dist.h
#                       (default: every header but chainrule/dist.h, which is
#                       libchainrule_mpi's)
#   CR_EXPORTS_CFLAGS   what compiling them needs (MPI's include directory)
set -eu
NM="$1" READELF="$2" LIB="$3" INC="$4" GENINC="$5" SOVERSION="$6"
shift 6
LIBNAME="${CR_EXPORTS_LIB:-chainrule}"
read -r -a extra_cflags <<<"${CR_EXPORTS_CFLAGS:-}"

d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0

# ---- soname
soname=$("$READELF" -d "$LIB" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [ "$soname" != "lib$LIBNAME.so.$SOVERSION" ]; then
  echo "FAIL: soname is '$soname', expected lib$LIBNAME.so.$SOVERSION"; fail=1
else
  echo "ok: soname $soname"
fi

# ---- what the library exports: "name[@@version] type value size"
"$NM" -D --defined-only -P "$LIB" >"$d/nm.txt"
node="${CR_EXPORTS_NODE:-CHAINRULE}_$SOVERSION"
awk '{print $1}' "$d/nm.txt" | sed 's/@.*//' | sort -u >"$d/exported-all.txt"
grep '^cr_[a-z]' "$d/exported-all.txt" >"$d/exported.txt" || true
echo "exported: $(wc -l <"$d/exported-all.txt") defined dynamic symbols, $(wc -l <"$d/exported.txt") public names"

internal=$(grep '^cr__' "$d/exported-all.txt" || true)
if [ -n "$internal" ]; then
  echo "FAIL: internal cr__ symbols exported ($(echo "$internal" | wc -l)):"; echo "$internal" | head -20; fail=1
fi
# the version node itself and what the linker may define; anything else is a leak
other=$(grep -v '^cr_' "$d/exported-all.txt" |
        grep -vxE "$node|_init|_fini|_edata|_end|__bss_start" || true)
if [ -n "$other" ]; then
  echo "FAIL: symbols outside the public API exported:"; echo "$other" | head -20; fail=1
fi
unversioned=$(awk -v v="@@$node" '$1 ~ /^cr_[a-z]/ && index($1, v) == 0 {print $1}' "$d/nm.txt")
if [ -n "$unversioned" ]; then
  echo "FAIL: public symbols not in version node $node (is src/chainrule.map's node renamed with the soversion?):"
  echo "$unversioned" | head -20; fail=1
fi

# ---- what the headers declare
headers="${CR_EXPORTS_HEADERS:-$(cd "$INC" && ls chainrule.h chainrule/*.h | grep -vx 'chainrule/dist.h'
                                  cd "$GENINC" 2>/dev/null && ls chainrule/*.h 2>/dev/null || true)}"
for h in $headers; do echo "#include <$h>"; done >"$d/all.c"
# only these headers' declarations count (dist.h includes the core's)
for h in $headers; do echo "/$h:"; done >"$d/mine.txt"
"$@" -std=c11 -I"$INC" -I"$GENINC" "${extra_cflags[@]}" -fsyntax-only -aux-info "$d/aux.txt" "$d/all.c"
# "/* .../include/chainrule/ops.h:25:NC */ extern cr_tensor *cr_add (cr_ctx *, ...);"
grep -F -f "$d/mine.txt" "$d/aux.txt" | grep -oE '\bcr_[a-z][A-Za-z0-9_]* \(' |
  sed 's/ ($//' >"$d/functions.txt"
# objects: "extern <type> name, name;" without parentheses, one statement per
# ';', from the lines that the line markers ('# 25 "file"') place in these headers
sed 's/:$/"/' "$d/mine.txt" >"$d/mine_marker.txt"
"$@" -std=c11 -I"$INC" -I"$GENINC" "${extra_cflags[@]}" -E "$d/all.c" |
  awk -v list="$d/mine_marker.txt" 'BEGIN {while ((getline l < list) > 0) pat[l] = 1}
       /^# [0-9]+ "/ {keep = 0; for (p in pat) if (index($0, p)) keep = 1; next}
       keep' | tr '\n' ' ' | tr ';' '\n' |
  grep -E '^[[:space:]]*extern[[:space:]]' | grep -v '[("]' |
  awk -F, '{for (i = 1; i <= NF; i++) {n = split($i, w, /[^A-Za-z0-9_]+/);
             while (n > 0 && w[n] == "") n--; if (n > 0) print w[n]}}' |
  grep '^cr_[a-z]' >"$d/objects.txt" || true
sort -u "$d/functions.txt" "$d/objects.txt" >"$d/declared.txt"
echo "declared: $(wc -l <"$d/functions.txt") functions, $(wc -l <"$d/objects.txt") objects in $(echo $headers | wc -w) headers"
if [ "$(wc -l <"$d/functions.txt")" -lt 10 ]; then
  echo "FAIL: found too few declarations; is the header scan broken?"; fail=1
fi

missing=$(comm -23 "$d/declared.txt" "$d/exported.txt")
if [ -n "$missing" ]; then
  echo "FAIL: declared in the public headers but not exported (undefined, static, or hidden by src/chainrule.map):"
  echo "$missing"; fail=1
fi
undeclared=$(comm -13 "$d/declared.txt" "$d/exported.txt")
if [ -n "$undeclared" ]; then
  echo "FAIL: exported but declared in no public header (make it static, or rename it cr__ if other files need it):"
  echo "$undeclared"; fail=1
fi

[ "$fail" = 0 ] && echo "ok: lib$LIBNAME.so exports exactly the $(wc -l <"$d/declared.txt") public names, no cr__ helper"
# the script's status (no `exit`: bash leaks under valgrind, which CI runs
# the suite under, when it exits with an EXIT trap set)
[ "$fail" = 0 ]
