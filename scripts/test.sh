#!/usr/bin/env bash
# Quick start, step 2: install what the tests need and run every check and test:
# formatting, clippy (native and wasm32), unit and integration tests, the browser tests of the
# client's connection logic (wasm-bindgen-test in headless Chromium against a real server), and the
# end-to-end tests of the served app in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchain.sh
summary=$(mktemp)
exec > >(tee "$summary") 2>&1
ensure_build_tools
ensure_test_tools

say "cargo fmt --check"
cargo fmt --all -- --check
say "clippy (native)"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "clippy (wasm32)"
cargo clippy -p frontend -p shared --target wasm32-unknown-unknown --all-targets --locked -- -D warnings

say "unit and integration tests"
cargo test --workspace --exclude e2e --locked

build_frontend

say "browser tests of the client (wasm-bindgen-test, headless Chromium, real server)"
cargo build -p server --locked
data=$(mktemp -d)
log="$data/server.log"
# The test page comes from the test runner's own port: another origin, and no account.
target/debug/server --bind 127.0.0.1:0 --data-dir "$data" --static-dir "$data/none" \
  --allow-anonymous --allowed-origin '*' >"$log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  addr=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -n1 | sed 's|listening on http://||') || true
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$log"; echo "test server did not start" >&2; exit 1; }
CHAT_TEST_WS_URL="ws://$addr/ws" WASM_BINDGEN_TEST_TIMEOUT=60 \
  cargo test -p frontend --target wasm32-unknown-unknown --locked
kill $server_pid

say "end-to-end tests (the served app in headless Chromium)"
cargo test -p e2e --locked

say "all checks and tests passed"
# One closing line over every suite above (cargo prints one line per test binary).
awk '/test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "Summary: %d passed, %d failed\n", p, f }' "$summary"
rm -f "$summary"
