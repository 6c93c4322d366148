#!/usr/bin/env bash
# Several nodes on one Redis, on this machine: redis-server on 127.0.0.1:6380 (data in ./data/cluster,
# AOF with `appendfsync always`) and two chat nodes, http://127.0.0.1:8080 and http://127.0.0.1:8081.
# Flags after the script go to both nodes (e.g. `--allow-anonymous`). Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchain.sh
ensure_build_tools
if ! command -v redis-server >/dev/null; then
  say "installing redis-server (Debian package)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server
fi
build_frontend
cargo build --release -p server

mkdir -p data/cluster/redis
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait' EXIT INT TERM
say "starting redis-server on 127.0.0.1:6380"
redis-server --port 6380 --bind 127.0.0.1 --dir data/cluster/redis \
  --appendonly yes --appendfsync always --save "" >data/cluster/redis.log 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  redis-cli -p 6380 ping >/dev/null 2>&1 && break
  sleep 0.1
done
for port in 8080 8081; do
  say "starting a node on http://127.0.0.1:$port"
  target/release/server --bind "127.0.0.1:$port" --redis-url redis://127.0.0.1:6380 "$@" &
  pids+=($!)
done
wait -n
