# Sourced by the static-file benchmarks: `make_corpus DIR` writes the measured files into DIR,
# the same bytes every time (seeded), with .br and .gz siblings for the text files.
make_corpus() {
    local root=$1
    mkdir -p "$root"
    python3 - "$root" <<'PY'
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
        brotli -f -k -q 11 "$root/$f"
        gzip -f -k -9 "$root/$f"
    done
}

# A free loopback port (bound and released; good enough for a benchmark on a quiet machine).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until something answers `GET /page.html` on the port (any status), or fails loudly.
wait_for_port() {
    local port=$1 log=${2:-/dev/null}
    for _ in $(seq 300); do
        curl -s -o /dev/null "http://127.0.0.1:$port/page.html" && return
        sleep 0.1
    done
    echo "nothing answers on 127.0.0.1:$port" >&2
    cat "$log" >&2
    return 1
}

# Installs the Debian packages named, if any (the callers name only the missing ones).
install_missing() {
    [ $# -eq 0 ] && return
    echo "installing $*" >&2
    apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
}

BROTLI_MODULE=/usr/lib/nginx/modules/ngx_http_brotli_static_module.so

# Installs what every nginx-against-tandem script needs (nginx with its brotli_static module,
# wrk, brotli) and each `command:package` given, when missing.
install_bench_tools() {
    local need=() pair
    command -v nginx >/dev/null || need+=(nginx)
    [ -f "$BROTLI_MODULE" ] || need+=(libnginx-mod-http-brotli-static)
    command -v wrk >/dev/null || need+=(wrk)
    command -v brotli >/dev/null || need+=(brotli)
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
    done
    install_missing "${need[@]}"
}

# Sets TANDEM: TANDEM_BIN when given (to compare binaries), else a release build of this
# checkout.
release_tandem() {
    TANDEM=${TANDEM_BIN:-$REPO/target/release/tandem}
    if [ -z "${TANDEM_BIN:-}" ]; then
        echo "building tandem (release)" >&2
        (cd "$REPO" && cargo build --release --quiet)
    fi
}

# Sets TANDEM and FLOOR: TANDEM_BIN and FLOOR_BIN when given (to compare binaries), else release
# builds of this checkout and of bench/floor.
release_servers() {
    release_tandem
    FLOOR=${FLOOR_BIN:-$BENCH/floor/target/release/tandem-floor}
    if [ -z "${FLOOR_BIN:-}" ]; then
        echo "building the framework floor (release)" >&2
        cargo build --release --quiet --manifest-path "$BENCH/floor/Cargo.toml"
    fi
}

# nginx_conf WORKERS KEEPALIVE_REQUESTS SERVER_LINES: writes $WORK/nginx/nginx.conf, the static
# file server every benchmark compares against (brotli_static, gzip_static, sendfile, an open file
# cache, no access log), whose `server` block holds SERVER_LINES.
nginx_conf() {
    local workers=$1 keepalive_requests=$2 server_lines=$3
    cat > "$WORK/nginx/nginx.conf" <<CONF
load_module $BROTLI_MODULE;
worker_processes $workers;
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
    keepalive_requests $keepalive_requests;
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
        $server_lines
    }
}
CONF
}

# Stops every server of the caller's SERVERS that has a PID[server], and waits for it.
stop_servers() {
    local s
    for s in "${SERVERS[@]}"; do
        if [ -n "${PID[$s]:-}" ]; then
            kill "${PID[$s]}" 2>/dev/null || true
            wait "${PID[$s]}" 2>/dev/null || true
            PID[$s]=""
        fi
    done
}

# The processes whose CPU time a server's requests cost: nginx's workers, the others themselves
# (/proc/PID/stat of a process counts all of its threads). The caller keeps PID[server].
serving_pids() {
    if [ "$1" = nginx ]; then pgrep -P "${PID[nginx]}"; else echo "${PID[$1]}"; fi
}
cpu_ticks() {
    local total=0 p
    for p in $(serving_pids "$1"); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)
