#!/usr/bin/env bash
# Quick start, step 1: install what is missing, build the web app, and serve the whole app at
# http://127.0.0.1:8080 (flags after the script go to the server; see `cargo run -p server -- --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchain.sh
ensure_build_tools
build_frontend
say "starting the server"
exec cargo run --release -p server -- "$@"
