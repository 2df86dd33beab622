#!/usr/bin/env bash
# Static-file throughput: tandem (static.mode = "app") against nginx with gzip_static and
# brotli_static, on the same corpus, one worker each pinned to core 0, wrk pinned to core 1.
# Rounds alternate nginx/tandem so drift on a shared machine hits both alike.
#
#   bench/static.sh                 # 3 rounds x 5 s per row and server (about 3 minutes)
#   ROUNDS=1 DURATION=3 bench/static.sh
#   TANDEM_BIN=/path/to/tandem bench/static.sh   # no build
#
# Needs root for apt-get only when nginx, its brotli module or wrk are missing.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-50}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BROTLI_MODULE=/usr/lib/nginx/modules/ngx_http_brotli_static_module.so

need=()
command -v nginx >/dev/null || need+=(nginx)
[ -f "$BROTLI_MODULE" ] || need+=(libnginx-mod-http-brotli-static)
command -v wrk >/dev/null || need+=(wrk)
command -v brotli >/dev/null || need+=(brotli)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

# TANDEM_BIN=path skips the build (e.g. to compare two binaries).
TANDEM=${TANDEM_BIN:-$REPO/target/release/tandem}
if [ -z "${TANDEM_BIN:-}" ]; then
    echo "building tandem (release)" >&2
    (cd "$REPO" && cargo build --release --quiet)
fi

WORK=$(mktemp -d /tmp/tandem-bench.XXXXXX)
chmod 755 "$WORK"  # nginx workers run as an unprivileged user
NGINX_PID=""
TANDEM_PID=""
cleanup() {
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null || true
    [ -n "$TANDEM_PID" ] && kill "$TANDEM_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- corpus --------------------------------------------------------------------------------
ROOT="$WORK/htdocs"
mkdir -p "$ROOT" "$WORK/public" "$WORK/nginx/logs"
python3 - "$ROOT" <<'PY'
import os, random, sys
root = sys.argv[1]
random.seed(42)
words = "static files served precompressed by tandem and nginx with brotli gzip zstd".split()
def prose(n):
    return " ".join(random.choice(words) for _ in range(n))
html = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8"><title>bench</title></head><body>']
while sum(len(l) + 1 for l in html) < 6000:
    html.append(f"<p>{prose(12)}</p>")
html.append("</body></html>")
open(os.path.join(root, "page.html"), "w").write("\n".join(html) + "\n")
js = []
i = 0
while sum(len(l) + 1 for l in js) < 150_000:
    js.append(f"export function f{i}(a, b) {{ return a * {random.randint(1, 999)} + b - {i}; /* {prose(6)} */ }}")
    i += 1
open(os.path.join(root, "app.js"), "w").write("\n".join(js) + "\n")
open(os.path.join(root, "image.png"), "wb").write(os.urandom(20 * 1024))
PY
for f in page.html app.js; do
    brotli -k -q 11 "$ROOT/$f"
    gzip -k -9 "$ROOT/$f"
done

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGINX_PORT=$(port)
TANDEM_PORT=$(port)

# --- nginx -----------------------------------------------------------------------------------
cat > "$WORK/nginx/nginx.conf" <<CONF
load_module $BROTLI_MODULE;
worker_processes 1;
daemon off;
master_process on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 1s;
    gzip_static on;
    brotli_static on;
    gzip_vary on;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $ROOT;
    }
}
CONF
taskset -c "$SERVER_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!

# --- tandem ----------------------------------------------------------------------------------
# From $WORK, where no tandem.toml is found: built-in defaults plus these variables.
(cd "$WORK" && exec env -u TANDEM_CONFIG -u PORT \
    TANDEM__SERVER__PORT="$TANDEM_PORT" TANDEM__SERVER__WORKERS=1 TANDEM__RATE_LIMIT__ENABLED=false \
    TANDEM__STATIC__HTDOCS="$ROOT" TANDEM__STATIC__PUBLIC="$WORK/public" RUST_LOG=warn \
    taskset -c "$SERVER_CPU" "$TANDEM" serve 2>"$WORK/tandem.log") &
TANDEM_PID=$!

wait_for() { for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$1/page.html" && return; sleep 0.1; done; echo "server on $1 did not start" >&2; cat "$WORK"/nginx/logs/error.log "$WORK"/tandem.log >&2; exit 1; }
wait_for "$NGINX_PORT"
wait_for "$TANDEM_PORT"
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)

etag() { curl -s -o /dev/null -D - -H 'Accept-Encoding: br, gzip' "http://127.0.0.1:$1/page.html" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}'; }
NGINX_ETAG=$(etag "$NGINX_PORT")
TANDEM_ETAG=$(etag "$TANDEM_PORT")

# Sanity: both servers answer each row the same way.
for p in "$NGINX_PORT" "$TANDEM_PORT"; do
    for path in /page.html /app.js; do
        enc=$(curl -s -o /dev/null -D - -H 'Accept-Encoding: br, gzip' "http://127.0.0.1:$p$path" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding"{print $2}')
        [ "$enc" = br ] || { echo "port $p $path: expected br, got '$enc'" >&2; exit 1; }
    done
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# row name | path | extra header (for the server's own ETag: @ETAG@)
ROWS=(
    "6 KB HTML, br|/page.html|"
    "150 KB JS, br|/app.js|"
    "20 KB PNG, identity|/image.png|"
    "304 If-None-Match|/page.html|If-None-Match: @ETAG@"
    "404|/missing.html|"
)

declare -A RPS P99 CPU
run() { # server port pid row-index round
    local server=$1 port=$2 pid=$3 i=$4
    IFS='|' read -r name path extra <<<"${ROWS[$i]}"
    local etag=$NGINX_ETAG
    [ "$server" = tandem ] && etag=$TANDEM_ETAG
    local args=(-t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H 'Accept-Encoding: br, gzip')
    [ -n "$extra" ] && args+=(-H "${extra//@ETAG@/$etag}")
    local before after out
    before=$(cpu_ticks "$pid")
    out=$(taskset -c "$CLIENT_CPU" wrk "${args[@]}" "http://127.0.0.1:$port$path")
    after=$(cpu_ticks "$pid")
    local rps requests p99
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    requests=$(awk '/requests in/{print $1}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out")
    local cpu_us
    cpu_us=$(python3 -c "print(f'{($after-$before)*1e6/$CLK_TCK/max($requests,1):.1f}')")
    RPS[$server,$i]+="$rps "
    P99[$server,$i]+="$p99 "
    CPU[$server,$i]+="$cpu_us "
    echo "  round: $server ${name}: $rps req/s, p99 $p99, ${cpu_us} µs CPU/req" >&2
}

echo "nginx $(nginx -v 2>&1 | sed 's/.*\///'), tandem $("$TANDEM" --version | awk '{print $2}'); $ROUNDS rounds x ${DURATION}s, $CONNECTIONS connections, server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU" >&2
# Warm both (caches, open_file_cache).
for p in "$NGINX_PORT" "$TANDEM_PORT"; do taskset -c "$CLIENT_CPU" wrk -t1 -c10 -d1s -H 'Accept-Encoding: br, gzip' "http://127.0.0.1:$p/page.html" >/dev/null; done
for round in $(seq "$ROUNDS"); do
    for i in "${!ROWS[@]}"; do
        if (( (round + i) % 2 )); then
            run nginx "$NGINX_PORT" "$NGINX_WORKER" "$i"; run tandem "$TANDEM_PORT" "$TANDEM_PID" "$i"
        else
            run tandem "$TANDEM_PORT" "$TANDEM_PID" "$i"; run nginx "$NGINX_PORT" "$NGINX_WORKER" "$i"
        fi
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
to_ms() { python3 -c "
import re,sys
v=sys.argv[1]; m=re.match(r'([0-9.]+)(us|ms|s)$',v)
print(f'{float(m.group(1))*{\"us\":1e-3,\"ms\":1,\"s\":1e3}[m.group(2)]:.2f}' if m else v)" "$1"; }

printf '\n| row | nginx req/s | tandem req/s | ratio | nginx p99 ms | tandem p99 ms | nginx µs CPU/req | tandem µs CPU/req |\n'
printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for i in "${!ROWS[@]}"; do
    IFS='|' read -r name _ _ <<<"${ROWS[$i]}"
    n=$(median <<<"${RPS[nginx,$i]}"); t=$(median <<<"${RPS[tandem,$i]}")
    np=$(for v in ${P99[nginx,$i]}; do to_ms "$v"; done | tr '\n' ' ' | median)
    tp=$(for v in ${P99[tandem,$i]}; do to_ms "$v"; done | tr '\n' ' ' | median)
    nc=$(median <<<"${CPU[nginx,$i]}"); tc=$(median <<<"${CPU[tandem,$i]}")
    ratio=$(python3 -c "print(f'{$t/$n:.2f}')")
    printf '| %s | %.0f | %.0f | %s× | %s | %s | %s | %s |\n' "$name" "$n" "$t" "$ratio" "$np" "$tp" "$nc" "$tc"
done
printf '\n(medians of %s rounds; CPU per request from /proc/<pid>/stat utime+stime of the serving process)\n' "$ROUNDS"
