#!/usr/bin/env bash
# Builds the uWebSockets echo anchor (bench/anchors/uws_echo.cpp) from source
# trees the developer already has; fetches nothing.
#
#   UWS_SRC=/path/to/uWebSockets USOCKETS_SRC=/path/to/uSockets \
#     bash bench/anchors/build_uws.sh [OUT_DIR]
#
# USOCKETS_SRC defaults to $UWS_SRC/uSockets (a checkout with submodules).
# Use the uSockets commit that uWebSockets pins in its submodule entry
# (`git -C $UWS_SRC ls-tree HEAD uSockets`). Built with -O2, no SSL, no zlib
# (compression off). OUT_DIR defaults to bench/target/anchors. On missing
# sources or a failed build it prints one line "missing: <why>" and exits 3,
# which bench.py reports as a missing anchor.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-$HERE/../target/anchors}"
missing() { echo "missing: $*"; exit 3; }

[ -n "${UWS_SRC:-}" ] || missing "set UWS_SRC (uWebSockets source) and USOCKETS_SRC (its pinned uSockets)"
USOCKETS_SRC="${USOCKETS_SRC:-$UWS_SRC/uSockets}"
[ -f "$UWS_SRC/src/App.h" ] || missing "UWS_SRC=$UWS_SRC has no src/App.h"
[ -f "$USOCKETS_SRC/src/libusockets.h" ] || missing "USOCKETS_SRC=$USOCKETS_SRC has no src/libusockets.h"
command -v g++ >/dev/null && command -v gcc >/dev/null || missing "no gcc/g++"

mkdir -p "$OUT/usockets-obj"
OUT="$(cd "$OUT" && pwd)"
BIN="$OUT/uws_echo"
# Rebuild only when our source or the trees changed.
if [ -x "$BIN" ] && [ "$BIN" -nt "$HERE/uws_echo.cpp" ] && [ "$BIN" -nt "$HERE/build_uws.sh" ] \
   && [ -z "$(find "$UWS_SRC/src" "$USOCKETS_SRC/src" -newer "$BIN" -print -quit)" ]; then
    echo "built: $BIN"; exit 0
fi
NICE="nice -n 19"
CFLAGS="-O2 -DLIBUS_NO_SSL -std=c11 -I$USOCKETS_SRC/src"
objs=()
for c in "$USOCKETS_SRC"/src/*.c "$USOCKETS_SRC"/src/eventing/*.c "$USOCKETS_SRC"/src/crypto/*.c; do
    [ -f "$c" ] || continue
    o="$OUT/usockets-obj/$(basename "$(dirname "$c")")_$(basename "${c%.c}").o"
    $NICE gcc $CFLAGS -c "$c" -o "$o" 2>"$OUT/build.log" || missing "uSockets compile failed ($c), see $OUT/build.log"
    objs+=("$o")
done
$NICE g++ -O2 -std=c++20 -DLIBUS_NO_SSL -DUWS_NO_ZLIB -I"$UWS_SRC/src" -I"$USOCKETS_SRC/src" \
    "$HERE/uws_echo.cpp" "${objs[@]}" -o "$BIN.tmp" 2>"$OUT/build.log" \
    || missing "uws_echo compile failed, see $OUT/build.log"
mv "$BIN.tmp" "$BIN"
echo "built: $BIN"
