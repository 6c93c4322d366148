#!/bin/sh
# Trunk's post_build hook (see Trunk.toml) for release builds: drops the loader's classes for the
# exports that wasm-opt removed (scripts/strip-streams.mjs), minifies the JS loader (terser, from
# tools/; trunk minifies only the CSS and the page), then writes beside each file a `.gz` (gzip -9) and
# a `.br` (brotli at its best), which the server sends to browsers that accept them. Debug builds
# (`trunk serve`) are left as they are. `scripts/toolchain.sh` installs terser and brotli.
set -eu
[ "${TRUNK_PROFILE:-}" = release ] || exit 0
terser="$(dirname "$0")/../tools/node_modules/.bin/terser"
if [ -x "$terser" ]; then
  find "$TRUNK_STAGING_DIR" -type f -name '*.js' | while read -r file; do
    node "$(dirname "$0")/strip-streams.mjs" "$file"
    "$terser" "$file" --module --compress --mangle --output "$file"
  done
else
  echo "precompress: $terser is missing (scripts/toolchain.sh installs it): the loader stays as it is" >&2
fi
if ! command -v brotli >/dev/null 2>&1; then
  echo "precompress: brotli is not installed (apt-get install brotli): gzip only" >&2
fi
find "$TRUNK_STAGING_DIR" -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' \) |
  while read -r file; do
    gzip -9 -k -f -n "$file"
    if command -v brotli >/dev/null 2>&1; then brotli -q 11 -k -f "$file"; fi
  done
