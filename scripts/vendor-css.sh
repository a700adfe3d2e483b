#!/usr/bin/env bash
# Re-fetches the vendored CSS framework (Pico CSS) at a pinned version with npm, so Accord serves it
# from static/ and never from a CDN. Only the one stylesheet Accord uses and the licence are copied.
#
#   scripts/vendor-css.sh            # the pinned version below; checks the file's SHA-256
#   scripts/vendor-css.sh 2.1.2      # another version: copies it and prints its SHA-256 to pin
set -euo pipefail
cd "$(dirname "$0")/.."

PINNED=2.1.1
PINNED_SHA256=06cf0bead048c54f4e2c281c26ae0d695cb0da8675545366ac7fc4b39c779398
VARIANT=pico.fluid.classless.min.css  # no classes, no container widths, the smallest variant

version="${1:-$PINNED}"
dest=static/vendor/pico
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# npm checks the tarball against the registry's integrity hash; no project dependency is added.
(cd "$work" && npm pack --silent "@picocss/pico@$version" >/dev/null)
tar -xzf "$work/picocss-pico-$version.tgz" -C "$work"

sha="$(sha256sum "$work/package/css/$VARIANT" | cut -d' ' -f1)"
if [[ "$version" == "$PINNED" && -n "$PINNED_SHA256" && "$sha" != "$PINNED_SHA256" ]]; then
  echo "vendor-css: $VARIANT $version has SHA-256 $sha, expected $PINNED_SHA256; nothing copied" >&2
  exit 1
fi

mkdir -p "$dest"
install -m 644 "$work/package/css/$VARIANT" "$dest/$VARIANT"
install -m 644 "$work/package/LICENSE.md" "$dest/LICENSE.md"
echo "vendor-css: Pico CSS $version → $dest/$VARIANT ($(wc -c <"$dest/$VARIANT") bytes, SHA-256 $sha)"
if [[ "$version" != "$PINNED" ]]; then
  echo "vendor-css: now set PINNED=$version and PINNED_SHA256=$sha here, and the version in static/vendor/README.md"
fi
