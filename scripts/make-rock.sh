#!/usr/bin/env bash
# `make rock`: the release tarball and the source rock of this version.
#
#   turbo_ws-<version>.tar.gz       what building and reading need, under
#                                   one top directory turbo_ws-<version>/
#                                   (the layout the rockspec's source names)
#   turbo_ws-<version>-1.src.rock   rockspec/turbo_ws-<version>-1.rockspec
#                                   and that tarball, packed by `luarocks pack`
#
# <version> is Cargo.toml's. Both files go to $ROCK_DIR (default: the
# repository root). `luarocks install ./turbo_ws-<version>-1.src.rock` then
# builds and installs without fetching anything but crates.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' Cargo.toml | head -1)
name=turbo_ws-$version
rockspec=rockspec/$name-1.rockspec
if [ ! -f "$rockspec" ]; then
  echo "make-rock: no $rockspec for Cargo.toml's version $version" >&2
  exit 1
fi
out=${ROCK_DIR:-$root}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The release tarball, from the working tree. Tests, fuzzing and benchmarks
# stay out: a user builds the crate, nothing else.
stamp=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
tar -czf "$work/$name.tar.gz" --sort=name --owner=0 --group=0 --numeric-owner \
  --mtime="@$stamp" --transform "s,^,$name/," \
  Cargo.toml Cargo.lock build.rs rustfmt.toml README.md src lua docs examples bin rockspec

# `luarocks pack` fetches the source named in the rockspec: a copy pointing
# at the tarball just made. The rock then gets the real rockspec back
# (same entry name), so it carries the published URL.
mkdir "$work/pack"
sed "s|^\(  url = \).*|\1\"file://$work/$name.tar.gz\",|" "$rockspec" >"$work/pack/$name-1.rockspec"
(cd "$work" && luarocks pack "$work/pack/$name-1.rockspec" >/dev/null)
cp "$rockspec" "$work/"
(cd "$work" && zip -q "$name-1.src.rock" "$name-1.rockspec")

cp "$work/$name.tar.gz" "$work/$name-1.src.rock" "$out/"
echo "$out/$name-1.src.rock"
