#!/usr/bin/env bash
# What sharing the rate limit through Redis costs (issue 12; docs/reference.md §6): /json
# throughput, p99 and CPU per request with the limiter off, in memory and in Redis, first against
# one tandem, then against two tandem replicas behind nginx.
#
#   bench/rate_limit_redis.sh                   # 10 s per row
#   DURATION=3 bench/rate_limit_redis.sh        # a quick check that it all works
#   TANDEM_BIN=target/debug/tandem DURATION=1 bench/rate_limit_redis.sh   # the script itself
#
# Everything listens on 127.0.0.1 and stops by itself. The limit is set so high (per_second and
# burst 1,000,000) that nothing is refused: what is measured is the cost of the decision. Every
# request comes "from" a random 10.x.y.z address in X-Forwarded-For (wrk Lua, tandem trusts
# 127.0.0.1), so Redis sees many keys, as it would in production, not one hot key.
# CPU is utime+stime from /proc of the tandem processes and, separately, of redis-server, per
# request: steadier than req/s on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-50}"
BASE_PORT="${BASE_PORT:-18190}"
TICKS=$(getconf CLK_TCK)
WORK="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in wrk redis-server nginx curl; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done
TANDEM_BIN="${TANDEM_BIN:-}"
if [ -z "$TANDEM_BIN" ]; then
    cargo build --release --quiet
    TANDEM_BIN=./target/release/tandem
fi

cat >"$WORK/clients.lua" <<'LUA'
math.randomseed(os.time())
request = function()
  local ip = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
  return wrk.format("GET", "/json", { ["X-Forwarded-For"] = ip })
end
LUA

wait_for() { # url
    for _ in $(seq 200); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "bench: $1 never answered" >&2
    exit 1
}

cpu_ticks() { # pids... -> utime+stime summed
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}

REDIS_PORT=$((BASE_PORT + 9))
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" --loglevel warning --daemonize no >/dev/null &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

start_tandem() { # port backend -> pid in $tandem_pid
    local port=$1 backend=$2 enabled=true
    [ "$backend" = off ] && { enabled=false; backend=memory; }
    TANDEM__SERVER__HOST=127.0.0.1 TANDEM__SERVER__PORT="$port" TANDEM__SERVER__WORKERS=1 \
    TANDEM__STATIC__MODE=nginx TANDEM__PROXY__TRUSTED=127.0.0.1/32 \
    TANDEM__RATE_LIMIT__ENABLED="$enabled" TANDEM__RATE_LIMIT__BACKEND="$backend" \
    TANDEM__RATE_LIMIT__REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    TANDEM__RATE_LIMIT__PER_SECOND=1000000 TANDEM__RATE_LIMIT__BURST=1000000 \
    RUST_LOG=warn "$TANDEM_BIN" serve &
    tandem_pid=$!
    pids+=("$tandem_pid")
    wait_for "http://127.0.0.1:$port/healthz"
}

start_nginx() { # port upstream-ports...
    local port=$1; shift
    mkdir -p "$WORK/nginx"
    {
        echo "worker_processes 1; pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log;"
        echo "events { worker_connections 1024; }"
        echo "http { access_log off;"
        echo "  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;"
        echo "  fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;"
        echo "  upstream tandem { keepalive 32;"
        for upstream in "$@"; do echo "    server 127.0.0.1:$upstream;"; done
        echo "  }"
        echo "  server { listen 127.0.0.1:$port;"
        echo "    location / { proxy_pass http://tandem; proxy_http_version 1.1;"
        echo "      proxy_set_header Connection \"\";"
        echo "      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } } }"
    } >"$WORK/nginx/nginx.conf"
    nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' 2>/dev/null &
    nginx_pid=$!
    pids+=("$nginx_pid")
    wait_for "http://127.0.0.1:$port/healthz"
}

stop() { # pids...
    kill "$@" 2>/dev/null || true
    for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# One wrk run against $1; prints "req/s p99_ms tandem_cpu_us_per_req redis_cpu_us_per_req non2xx"
# with the CPU of the tandem processes $2 (space-separated) and of redis-server.
measure() {
    local url=$1 tandems=$2
    local t0 r0 t1 r1 out
    # shellcheck disable=SC2086 # $tandems is a list of PIDs
    t0=$(cpu_ticks $tandems); r0=$(cpu_ticks "$redis_pid")
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/clients.lua" "$url")
    # shellcheck disable=SC2086
    t1=$(cpu_ticks $tandems); r1=$(cpu_ticks "$redis_pid")
    echo "$out" | awk -v tandem="$((t1 - t0))" -v redis="$((r1 - r0))" -v hz="$TICKS" '
        /Requests\/sec/ { rps = $2 }
        /^ +99%/ { p99 = $2; if (p99 ~ /us$/) p99 = p99 / 1000; else if (p99 ~ /ms$/) p99 += 0; else if (p99 ~ /s$/) p99 *= 1000 }
        /requests in/ { n = $1 }
        /Non-2xx/ { bad = $NF }
        END {
            n = n ? n : 1
            printf "%.0f %.2f %.1f %.1f %d\n", rps, p99, tandem / hz * 1e6 / n, redis / hz * 1e6 / n, bad
        }'
}

printf "load average before: %s\n" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-36s %8s %8s %13s %12s %8s\n" "row" "req/s" "p99 ms" "tandem µs/req" "redis µs/req" "non-2xx"
# shellcheck disable=SC2086 # $2 is the five measured fields
row() { printf "%-36s %8s %8s %13s %12s %8s\n" "$1" $2; }

for backend in off memory redis; do
    start_tandem "$BASE_PORT" "$backend"
    row "one tandem, limiter $backend" "$(measure "http://127.0.0.1:$BASE_PORT" "$tandem_pid")"
    stop "$tandem_pid"
done

for backend in off memory redis; do
    start_tandem "$((BASE_PORT + 1))" "$backend"; first=$tandem_pid
    start_tandem "$((BASE_PORT + 2))" "$backend"; second=$tandem_pid
    start_nginx "$BASE_PORT" "$((BASE_PORT + 1))" "$((BASE_PORT + 2))"
    row "2 replicas + nginx, limiter $backend" "$(measure "http://127.0.0.1:$BASE_PORT" "$first $second")"
    stop "$nginx_pid" "$first" "$second"
done
printf "load average after: %s\n" "$(cut -d' ' -f1-3 /proc/loadavg)"
echo "keys Redis holds now (they expire by themselves): $(redis-cli -p "$REDIS_PORT" dbsize)"
