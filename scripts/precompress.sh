#!/bin/sh
# Trunk's post_build hook (see Trunk.toml): beside each file of a release build, a `.gz` (gzip -9) and a
# `.br` (brotli at its best), which the server sends to browsers that accept them. Debug builds
# (`trunk serve`) are left as they are. `scripts/toolchain.sh` installs brotli.
set -eu
[ "${TRUNK_PROFILE:-}" = release ] || exit 0
if ! command -v brotli >/dev/null 2>&1; then
  echo "precompress: brotli is not installed (apt-get install brotli): gzip only" >&2
fi
find "$TRUNK_STAGING_DIR" -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' \) |
  while read -r file; do
    gzip -9 -k -f -n "$file"
    if command -v brotli >/dev/null 2>&1; then brotli -q 11 -k -f "$file"; fi
  done
