#!/usr/bin/env bash
# Hostile on-the-fly compression (issue 13): CPU seconds the tandem process spends per request
# for a large text file that has no precompressed sibling, asked for with `Accept-Encoding: br`.
# Counts the process's own utime+stime from /proc/PID/stat (not wall time: the machine may be
# shared), over REQUESTS sequential requests to 127.0.0.1 only, one worker.
#
#   bench/hostile/compression.sh                          # builds --release once, then measures
#   TANDEM_BIN=/path/to/tandem bench/hostile/compression.sh   # measure that binary, no build
#   REQUESTS=5 SIZE_MB=22.8 bench/hostile/compression.sh
set -euo pipefail

REQUESTS=${REQUESTS:-5}
SIZE_MB=${SIZE_MB:-22.8}
REPO=$(cd "$(dirname "$0")/../.." && pwd)

BENCH=$REPO/bench
# shellcheck source=bench/corpus.sh
source "$BENCH/corpus.sh"
release_tandem

WORK=$(mktemp -d /tmp/tandem-hostile.XXXXXX)
TANDEM_PID=""
cleanup() {
    if [ -n "$TANDEM_PID" ]; then
        kill "$TANDEM_PID" 2>/dev/null || true
        wait "$TANDEM_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/htdocs" "$WORK/public"
# Varied text (not one repeated line), so compressing it costs what a real log or dump costs.
python3 - "$WORK/htdocs/big.txt" "$SIZE_MB" <<'PY'
import random, sys
path, size = sys.argv[1], int(float(sys.argv[2]) * 1_000_000)
random.seed(13)
words = "tandem serves static files json api websocket nginx brotli gzip zstd request".split()
with open(path, "w") as out:
    written = 0
    while written < size:
        line = " ".join(random.choice(words) for _ in range(12)) + f" {random.random()}\n"
        out.write(line)
        written += len(line)
PY
BYTES=$(stat -c %s "$WORK/htdocs/big.txt")

PORT=$(free_port)
TANDEM__SERVER__PORT=$PORT TANDEM__SERVER__WORKERS=1 \
TANDEM__STATIC__HTDOCS="$WORK/htdocs" TANDEM__STATIC__PUBLIC="$WORK/public" \
TANDEM__RATE_LIMIT__ENABLED=false RUST_LOG=warn \
    "$TANDEM" serve >"$WORK/tandem.log" 2>&1 &
TANDEM_PID=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" 2>/dev/null && break
    sleep 0.1
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$TANDEM_PID/stat"; }
HZ=$(getconf CLK_TCK)

# One request first, so the file's first look (stat, sibling check) is not counted.
curl -fsS -o /dev/null -H 'Accept-Encoding: br' "http://127.0.0.1:$PORT/big.txt"
before=$(cpu_ticks)
for _ in $(seq "$REQUESTS"); do
    curl -fsS -o /dev/null -D "$WORK/headers" -H 'Accept-Encoding: br' \
        "http://127.0.0.1:$PORT/big.txt"
done
after=$(cpu_ticks)
encoding=$(grep -i '^content-encoding:' "$WORK/headers" | tr -d '\r' | cut -d' ' -f2 || true)
python3 - "$before" "$after" "$HZ" "$REQUESTS" "$BYTES" "${encoding:-identity}" "$TANDEM" <<'PY'
import sys
before, after, hz, n, size = (int(x) for x in sys.argv[1:6])
encoding, binary = sys.argv[6], sys.argv[7]
cpu = (after - before) / hz
print(f"{binary}: {n} requests for {size / 1e6:.1f} MB text, Accept-Encoding: br -> {encoding}")
print(f"tandem CPU: {cpu:.2f} s in total, {cpu / n:.3f} s per request")
PY
