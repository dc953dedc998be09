#!/usr/bin/env bash
# Checks that vendor/candle-core is exactly the crates.io package candle-core $VERSION with the
# paths in PRUNED removed and vendor/candle-core.patch applied, byte for byte, so that a reader
# can trust the vendored tree by reading the patch alone (vendor/candle-core/NORBVAE-PATCH.md).
#
#   scripts/check_vendored_candle.sh          check; exit 1 with the differences if any
#   scripts/check_vendored_candle.sh --write  regenerate vendor/candle-core.patch from the tree
#
# The pristine crate comes from cargo's own download cache ($CARGO_HOME/registry/cache), so a
# machine that has fetched it once needs no network. Otherwise `cargo fetch` downloads it through
# a throwaway manifest that depends on candle-core = "=$VERSION" without norbvae's [patch]. Either
# way the .crate must have the SHA-256 that the crates.io index lists for this version.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

NAME=candle-core
VERSION=0.11.1
# The `cksum` of candle-core 0.11.1 in the crates.io index (https://index.crates.io/ca/nd/candle-core).
SHA256=d11c8be87cfbaef9ebb62fb3f850d1fc8e00cc1d11d393fdbe55a4d5c2cdb325
VENDOR=vendor/candle-core
PATCH=vendor/candle-core.patch
# Not vendored: the package's tests, benches, examples and lock file (the patch removes their
# sections from Cargo.toml). Deleted before the patch applies, so it shows only what we changed.
PRUNED=(Cargo.lock benches examples tests)

mode=check
case "${1:-}" in
  "") ;;
  --write) mode=write ;;
  *) echo "usage: $0 [--write]" >&2; exit 2 ;;
esac

fail() { echo "check_vendored_candle: $*" >&2; exit 1; }

# The pinned version is the one the build uses and the one vendored.
grep -qx "version = \"$VERSION\"" "$VENDOR/Cargo.toml" \
  || fail "$VENDOR/Cargo.toml is not $NAME $VERSION; update VERSION and SHA256 in $0 with the copy"
grep -A1 -x "name = \"$NAME\"" Cargo.lock | grep -qx "version = \"$VERSION\"" \
  || fail "Cargo.lock does not use $NAME $VERSION"

cargo_home=${CARGO_HOME:-$HOME/.cargo}
cached_crate() {
  local f
  for f in "$cargo_home"/registry/cache/*/"$NAME-$VERSION.crate"; do
    if [ -f "$f" ]; then echo "$f"; return 0; fi
  done
  return 0
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

crate=$(cached_crate)
if [ -z "$crate" ]; then
  echo "check_vendored_candle: $NAME $VERSION not in $cargo_home/registry/cache; fetching it with cargo" >&2
  mkdir -p "$work/fetch/src"
  : >"$work/fetch/src/lib.rs"
  cat >"$work/fetch/Cargo.toml" <<EOF
[package]
name = "pristine-candle-core"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$NAME = "=$VERSION"
EOF
  # norbvae's lock file keeps the other packages at the versions already in the cache.
  cp Cargo.lock "$work/fetch/Cargo.lock"
  host=$(rustc -vV | sed -n 's/^host: //p')
  cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml" --target "$host" \
    || fail "cargo fetch of $NAME $VERSION failed (offline and not cached?)"
  crate=$(cached_crate)
  [ -n "$crate" ] || fail "cargo fetch did not leave $NAME-$VERSION.crate in $cargo_home/registry/cache"
fi
echo "$SHA256  $crate" | sha256sum --check --quiet - \
  || fail "$crate does not have the SHA-256 of $NAME $VERSION on crates.io ($SHA256)"

# a/: the registry crate without PRUNED; b/: our copy.
mkdir "$work/a"
tar -xzf "$crate" -C "$work/a" --strip-components=1
for p in "${PRUNED[@]}"; do
  [ -e "$work/a/$p" ] || fail "$p is not in the registry crate: update PRUNED in $0"
  rm -rf "${work:?}/a/$p"
done

if [ "$mode" = write ]; then
  cp -R "$VENDOR" "$work/b"
  {
    echo "$NAME $VERSION from crates.io (without ${PRUNED[*]}) -> $VENDOR."
    echo "Written by scripts/check_vendored_candle.sh --write; what and why: $VENDOR/NORBVAE-PATCH.md."
    echo
    # Exit status 1 means "they differ", which is expected.
    (cd "$work" && git diff --no-index --no-prefix --no-color a b) || [ $? -eq 1 ]
  } >"$work/patch"
  mv "$work/patch" "$PATCH"
  echo "wrote $PATCH ($(grep -c '^diff --git' "$PATCH") files)"
  exit 0
fi

# Apply outside any git repository (GIT_CEILING_DIRECTORIES), -p1 strips the a/ and b/ prefixes.
(cd "$work/a" && GIT_CEILING_DIRECTORIES="$work" git apply -p1 "$repo/$PATCH") \
  || fail "$PATCH does not apply to $NAME $VERSION from crates.io"
if ! diff -r "$work/a" "$VENDOR" >/dev/null; then
  echo "check_vendored_candle: $VENDOR differs from $NAME $VERSION + $PATCH:" >&2
  diff -ru "$work/a" "$VENDOR" | sed "s|$work/a|registry+patch|g" >&2 || true
  echo "If the change to $VENDOR is intended, run scripts/check_vendored_candle.sh --write and commit $PATCH." >&2
  exit 1
fi
echo "ok: $VENDOR = $NAME $VERSION from crates.io (sha256 ${SHA256:0:12}...) + $PATCH"
