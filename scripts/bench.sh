#!/usr/bin/env bash
# Benchmarks (see BENCHMARKS.md): builds the release server and load generator, prepares the baseline
# relays in a scratch directory, and runs each scenario, our server and a baseline in turns where there
# is one to compare with. Servers are pinned to CPU 0, the generator to CPU 1. Every result is one JSON
# line in $OUT (default bench-results/<date>.jsonl); progress goes to stderr.
#
#   scripts/bench.sh                 # everything (about 15 minutes)
#   scripts/bench.sh fanout idle     # some: fanout fanout-paced fanout-max rooms idle churn storm acks redis
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-/tmp/chat-bench}
BASELINES=${BASELINES:-$(cd .. && pwd)/shared/baselines}
OUT=${OUT:-bench-results/$(date -u +%Y%m%dT%H%M%SZ).jsonl}
mkdir -p "$BENCH_DIR" "$(dirname "$OUT")"
say() { printf '\n== %s\n' "$*" >&2; }

say "building (release)"
cargo build --release --locked -p server -p loadgen >&2
if [ ! -x "$BENCH_DIR/lean/release/lean-axum" ]; then
  rm -rf "$BENCH_DIR/lean-src" && cp -r "$BASELINES/lean-axum" "$BENCH_DIR/lean-src"
  (cd "$BENCH_DIR/lean-src" && CARGO_TARGET_DIR="$BENCH_DIR/lean" cargo build --release >&2)
fi
for b in seed-ws socketio; do
  if [ ! -d "$BENCH_DIR/$b/node_modules" ]; then
    rm -rf "${BENCH_DIR:?}/$b" && cp -r "$BASELINES/$b" "$BENCH_DIR/$b"
    (cd "$BENCH_DIR/$b" && npm ci --silent >&2)
  fi
done

ours="$PWD/target/release/server --bind 127.0.0.1:{port} --data-dir {dir} --static-dir {dir}/none --allow-anonymous --rate-limit 0 --max-connections-per-ip 0 --max-connections 20000"
# lean-axum reads with a 1 KiB buffer per connection, its best idle figure (ours keeps 128 bytes and
# reads through one buffer per thread: server/src/ws/io.rs).
lean="env PORT={port} WS_READ_BUFFER=1024 $BENCH_DIR/lean/release/lean-axum"
seed="env PORT={port} node $BENCH_DIR/seed-ws/server.js"
socketio="env PORT={port} node $BENCH_DIR/socketio/server.js"
loadgen() { taskset -c 1 "$PWD/target/release/loadgen" "$@"; }
record() { # name, then the loadgen arguments
  local name=$1; shift
  say "$name: loadgen $*"
  local line status=0
  line=$(loadgen "$@") || status=$?
  printf '{"bench":"%s","summary":%s}\n' "$name" "$line" | tee -a "$OUT"
  return $status
}
compare_with() { # name, baseline command, baseline protocol, scenario...
  local name=$1 base=$2 proto=$3; shift 3
  record "$name" compare --a "$ours" --b "$base" --b-protocol "$proto" "$@"
}

# Our server alone (started on CPU 0 for the one run).
alone() { # name, scenario... (EXTRA: more server flags)
  local name=$1; shift
  local dir; dir=$(mktemp -d)
  local cmd="${ours//\{dir\}/$dir} ${EXTRA:-}"
  taskset -c 0 ${cmd//\{port\}/19100} >"$dir/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:19100/healthz" >/dev/null && break; sleep 0.1; done
  record "$name" run --addr 127.0.0.1:19100 --server-pid "$pid" "$@" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

run() {
  case $1 in
    fanout)
      compare_with fanout-100-vs-lean "$lean" plain fanout --clients 100 --senders 10 --rate 5000 --duration 8
      compare_with fanout-1000-vs-lean "$lean" plain fanout --clients 1000 --senders 10 --rate 500 --duration 8 ;;
    fanout-paced)
      # The same with a commit at most every 2 ms (`--commit-interval`, off by default).
      record fanout-100-paced-vs-lean compare --a "$ours --commit-interval 2ms" --b "$lean" --b-protocol plain \
        fanout --clients 100 --senders 10 --rate 5000 --duration 8
      record fanout-1000-paced-vs-lean compare --a "$ours --commit-interval 2ms" --b "$lean" --b-protocol plain \
        fanout --clients 1000 --senders 10 --rate 500 --duration 8
      EXTRA="--commit-interval 2ms" alone acks-10-paced acks --senders 10 --window 32 --duration 8 ;;
    fanout-max)
      compare_with fanout-max-1000-vs-lean "$lean" plain --rounds 1 fanout --clients 1000 --senders 10 --rate 1800 --duration 8
      compare_with fanout-seed-1000 "$seed" plain --rounds 1 fanout --clients 1000 --senders 10 --rate 90 --duration 8
      compare_with fanout-socketio-1000 "$socketio" socketio --rounds 1 fanout --clients 1000 --senders 10 --rate 50 --duration 8 ;;
    rooms)
      # The same deliveries a second (45k): 1,000 rooms of 10 against one room of 1,000.
      alone rooms-1000x10 fanout --clients 10000 --rooms 1000 --senders 1000 --rate 5000 --duration 8
      alone rooms-1x1000 fanout --clients 1000 --senders 10 --rate 45 --duration 8 ;;
    idle)
      for base in lean:plain seed:plain socketio:socketio; do
        local cmd=${base%%:*}
        compare_with "idle-10000-vs-$cmd" "${!cmd}" "${base##*:}" --rounds 1 idle --clients 10000 --hold 5
      done ;;
    churn)
      compare_with churn-vs-lean "$lean" plain churn --concurrency 64 --duration 8 ;;
    storm)
      alone storm-10000 storm --clients 10000 --behind 100 ;;
    acks)
      alone acks-10 acks --senders 10 --window 32 --duration 8
      # 8 in flight each: with 16, the server (25k acks, 2.5M deliveries a second) outran what the
      # generator can read, and its slowest connections were closed with 1013, as slow readers are.
      alone acks-100 acks --senders 100 --window 8 --duration 8 ;;
    redis) run_redis ;;
    *) echo "unknown benchmark $1" >&2; exit 2 ;;
  esac
}

# Two nodes and Redis (AOF, appendfsync always) share CPU 0; clients alternate between the nodes.
run_redis() {
  local dir; dir=$(mktemp -d)
  taskset -c 0 redis-server --port 19200 --bind 127.0.0.1 --dir "$dir" --appendonly yes --appendfsync always --save "" >"$dir/redis.log" 2>&1 &
  local pids=($!)
  for _ in $(seq 50); do redis-cli -p 19200 ping >/dev/null 2>&1 && break; sleep 0.1; done
  for port in 19101 19102; do
    taskset -c 0 target/release/server --bind 127.0.0.1:$port --redis-url redis://127.0.0.1:19200 --data-dir "$dir/$port" --static-dir "$dir/none" --allow-anonymous --rate-limit 0 --max-connections-per-ip 0 >"$dir/$port.log" 2>&1 &
    pids+=($!)
  done
  for port in 19101 19102; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  done
  local target=(run --addr 127.0.0.1:19101 --addr 127.0.0.1:19102)
  for p in "${pids[@]}"; do target+=(--server-pid "$p"); done
  record redis-fanout-100 "${target[@]}" fanout --clients 100 --senders 10 --rate 5000 --duration 8 || true
  record redis-fanout-1000 "${target[@]}" fanout --clients 1000 --senders 10 --rate 500 --duration 8 || true
  record redis-acks-10 "${target[@]}" acks --senders 10 --window 32 --duration 8 || true
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$dir"
}

failed=0
for b in "${@:-fanout fanout-paced fanout-max rooms idle churn storm acks redis}"; do
  for one in $b; do run "$one" || failed=1; done
done
say "results in $OUT"
exit $failed
