#!/usr/bin/env bash
# Rate-limiter memory under a spray of distinct clients (docs/reference.md §6: "Limiter memory stays bounded
# however many distinct clients appear").
#
#   bench/rate_limit_memory.sh            # 1,000,000 clients over 4 keep-alive connections
#   CLIENTS=200000 bench/rate_limit_memory.sh
#
# Starts the release build on 127.0.0.1 with rate_limit.per_second = 1 and burst = 60: the prune
# interval (the time a full burst takes to refill, clamped to 1..60 s) is then 60 s, so the whole
# spray is alive at the peak, and the first prune comes after it. Prints VmRSS before, at the
# peak and after the prune, and the limiter's key counts from its debug log.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS="${CLIENTS:-1000000}"
CONNECTIONS="${CONNECTIONS:-4}"
PORT="${PORT:-18089}"
LOG="$(mktemp)"

cargo build --release --quiet

TANDEM__SERVER__HOST=127.0.0.1 TANDEM__SERVER__PORT="$PORT" TANDEM__SERVER__WORKERS=2 \
TANDEM__STATIC__MODE=nginx TANDEM__PROXY__TRUSTED=127.0.0.1/32 \
TANDEM__RATE_LIMIT__PER_SECOND=1 TANDEM__RATE_LIMIT__BURST=60 \
RUST_LOG=warn,tandem::rate_limit=debug \
    ./target/release/tandem serve 2>"$LOG" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$LOG"' EXIT
started=$(date +%s)

for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
echo "before: VmRSS $(rss) kB"
python3 bench/spray.py --port "$PORT" --pid "$pid" --clients "$CLIENTS" --connections "$CONNECTIONS"
echo "after spray: VmRSS $(rss) kB"

# Wait for the first prune that finds the spray (at most two intervals), then a moment more.
for _ in $(seq 130); do
    grep -q 'pruned idle clients' "$LOG" && break
    sleep 1
done
sleep 2
echo "after prune ($(( $(date +%s) - started )) s after start): VmRSS $(rss) kB"
grep 'pruned idle clients' "$LOG" | sed 's/^/tandem: /' || echo "no prune seen"
