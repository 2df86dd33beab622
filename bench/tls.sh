#!/usr/bin/env bash
# HTTPS throughput: tandem (tls.mode = "files") against nginx (`ssl` + `http2`), on the same
# certificate (an ECDSA P-256 one made here with openssl) and the same files (bench/corpus.sh),
# one worker each pinned to one core, the clients pinned to the other. Rows:
#   - a new connection per request with a full TLS 1.3 handshake: h2load -c 64 -n 64 (64 clients,
#     one request each), run again and again for the row's duration; every run is a new process,
#     so no session is resumed: the new-handshake rate;
#   - a new connection per request resuming the TLS session (wrk, HTTP/1.1, `Connection: close`:
#     wrk keeps each connection's session and offers it again, as a returning browser does);
#   - the 6 KB HTML (br) over HTTP/2 with 32 streams per connection (h2load -m 32);
#   - the same file over HTTP/1.1 keep-alive (wrk).
# The order of the servers rotates from row to row and round to round, so drift on a shared
# machine hits both alike; each cell is the median of the rounds. 127.0.0.1 only.
#
#   bench/tls.sh                            # 3 rounds x 5 s per row and server (~2 minutes)
#   ROUNDS=1 DURATION=2 bench/tls.sh
#   TANDEM_BIN=/path/to/tandem bench/tls.sh # no build
#
# If tandem does not answer HTTPS with the settings below (a build without TLS serving), the
# nginx half still runs and the script exits 1 saying so.
# Needs root for apt-get only when nginx, its brotli module, wrk, h2load, openssl or brotli are
# missing.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
# Concurrent connections: for the handshake row, for HTTP/1.1 keep-alive, and for HTTP/2 (each
# carrying STREAMS requests at once).
HANDSHAKE_CONNECTIONS=${HANDSHAKE_CONNECTIONS:-64}
RESUMED_CONNECTIONS=${RESUMED_CONNECTIONS:-16}
H1_CONNECTIONS=${H1_CONNECTIONS:-50}
H2_CONNECTIONS=${H2_CONNECTIONS:-10}
STREAMS=${STREAMS:-32}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$BENCH")
# shellcheck source=bench/corpus.sh
source "$BENCH/corpus.sh"

install_bench_tools h2load:nghttp2-client openssl:openssl

release_tandem

WORK=$(mktemp -d /tmp/tandem-bench-tls.XXXXXX)
chmod 755 "$WORK"  # nginx workers run as an unprivileged user
declare -A PID PORT
SERVERS=(nginx tandem)
trap 'stop_servers; rm -rf "$WORK"' EXIT

ROOT="$WORK/htdocs"
mkdir -p "$WORK/public" "$WORK/nginx/logs" "$WORK/tls"
make_corpus "$ROOT"
for s in "${SERVERS[@]}"; do PORT[$s]=$(free_port); done

# One certificate for both: ECDSA P-256 (what ACME CAs issue by default today), for localhost
# and 127.0.0.1, valid for a day.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null
chmod 644 "$WORK/tls/key.pem"  # nginx reads it as root, but keep it simple for its workers

# nginx 1.25.1 replaced `listen ... http2` with the `http2` directive.
NGINX_VERSION=$(nginx -v 2>&1 | sed 's/.*\///')
if [ "$(printf '%s\n1.25.1\n' "$NGINX_VERSION" | sort -V | head -1)" = 1.25.1 ]; then
    NGINX_LISTEN="listen 127.0.0.1:${PORT[nginx]} ssl; http2 on;"
else
    NGINX_LISTEN="listen 127.0.0.1:${PORT[nginx]} ssl http2;"
fi

start_nginx() {
    # keepalive_requests also caps requests per HTTP/2 connection since nginx 1.19.7: high, so
    # no row reconnects.
    nginx_conf 1 10000000 "$NGINX_LISTEN
        ssl_certificate $WORK/tls/cert.pem;
        ssl_certificate_key $WORK/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $ROOT;"
    taskset -c "$SERVER_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
        2>"$WORK/nginx.log" &
    PID[nginx]=$!
}

start_tandem() {
    # From $WORK, where no tandem.toml is found: built-in defaults plus these variables.
    (cd "$WORK" && exec env -u TANDEM_CONFIG -u PORT \
        TANDEM__SERVER__PORT="${PORT[tandem]}" TANDEM__SERVER__WORKERS=1 \
        TANDEM__RATE_LIMIT__ENABLED=false \
        TANDEM__TLS__MODE=files TANDEM__TLS__CERT_FILE="$WORK/tls/cert.pem" \
        TANDEM__TLS__KEY_FILE="$WORK/tls/key.pem" \
        TANDEM__STATIC__HTDOCS="$ROOT" TANDEM__STATIC__PUBLIC="$WORK/public" RUST_LOG=warn \
        taskset -c "$SERVER_CPU" "$TANDEM" serve 2>"$WORK/tandem.log") &
    PID[tandem]=$!
}

# Waits until the server answers `GET /page.html` over HTTPS, or returns 1 (its process gone or
# 30 s passed).
wait_for_https() {
    local s=$1
    for _ in $(seq 300); do
        curl -sk -o /dev/null "https://127.0.0.1:${PORT[$s]}/page.html" && return 0
        kill -0 "${PID[$s]}" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

header_of() { # server http-version-flag header-name
    curl -sk "$2" -o /dev/null -D - -H 'Accept-Encoding: br, gzip' \
        "https://127.0.0.1:${PORT[$1]}/page.html" \
        | tr -d '\r' | awk -F': ' -v n="$3" 'tolower($1)==n{print $2}'
}

# Each server answers HTTP/2 and HTTP/1.1 by ALPN with the brotli sibling, and presents the
# same certificate; any difference stops the benchmark.
check_answers() {
    local s flag want got fingerprint
    for s in "${SERVERS[@]}"; do
        for flag in --http2 --http1.1; do
            want=$([ "$flag" = --http2 ] && echo 2 || echo 1.1)
            got=$(curl -sk "$flag" -o /dev/null -w '%{http_version} %{http_code}' \
                -H 'Accept-Encoding: br, gzip' "https://127.0.0.1:${PORT[$s]}/page.html")
            [ "$got" = "$want 200" ] || { echo "$s $flag: expected '$want 200', got '$got'" >&2; exit 1; }
            got=$(header_of "$s" "$flag" content-encoding)
            [ "$got" = br ] || { echo "$s $flag: expected br, got '$got'" >&2; exit 1; }
        done
        fingerprint=$(openssl s_client -connect "127.0.0.1:${PORT[$s]}" -servername localhost \
            </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256)
        [ "$fingerprint" = "$(openssl x509 -in "$WORK/tls/cert.pem" -noout -fingerprint -sha256)" ] \
            || { echo "$s presents another certificate: $fingerprint" >&2; exit 1; }
    done
}


ROWS=(
    "new connection per request, full TLS 1.3 handshake (h2load, HTTP/2)"
    "new connection per request, resumed TLS 1.3 session (wrk, HTTP/1.1)"
    "6 KB HTML, br, HTTP/2, $STREAMS streams x $H2_CONNECTIONS connections"
    "6 KB HTML, br, HTTP/1.1 keep-alive, $H1_CONNECTIONS connections"
)

# Runs row `i` against `server`, setting REQUESTS and RATE (req/s); any error response or
# socket error stops the benchmark.
load() {
    local server=$1 i=$2 url="https://127.0.0.1:${PORT[$1]}/page.html" out
    local wrk=(taskset -c "$CLIENT_CPU" wrk -t1 -d"${DURATION}s" -H 'Accept-Encoding: br, gzip')
    case $i in
        0) full_handshakes "$server" "$url"; return ;;
        1) out=$("${wrk[@]}" -c"$RESUMED_CONNECTIONS" -H 'Connection: close' "$url") ;;
        2) out=$(taskset -c "$CLIENT_CPU" h2load -t1 -c"$H2_CONNECTIONS" -m"$STREAMS" \
                -D"$DURATION" -H 'Accept-Encoding: br, gzip' "$url") ;;
        3) out=$("${wrk[@]}" -c"$H1_CONNECTIONS" "$url") ;;
    esac
    if [ "$i" = 2 ]; then
        # With -D, the streams still open at the deadline are neither done nor failed; every
        # request that finished must have succeeded with a 2xx.
        REQUESTS=$(awk '/^requests:/{print $8}' <<<"$out")
        local bad
        bad=$(awk '/^requests:/{b += $10 + $12} /^status codes:/{b += $5 + $7 + $9} END{print b + 0}' <<<"$out")
        if [ -z "$REQUESTS" ] || [ "$REQUESTS" -eq 0 ] || [ "$bad" != 0 ]; then
            echo "$server h2load: not every request succeeded:" >&2; echo "$out" >&2; exit 1
        fi
        RATE=$(awk '/^finished in/{print $4}' <<<"$out")
        [ -n "${TLS_SEEN[$server]:-}" ] || TLS_SEEN[$server]=$(grep -E \
            '^(TLS Protocol|Cipher|Server Temp Key|Application protocol):' <<<"$out" | tr -s ' \n' ' ')
    else
        if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
            echo "$server wrk: errors:" >&2; echo "$out" >&2; exit 1
        fi
        REQUESTS=$(awk '/requests in/{print $1}' <<<"$out")
        RATE=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    fi
}

# h2load -c N -n N again and again until DURATION has passed: REQUESTS is every run's requests,
# RATE those over the sum of the runs' own times (process starts left out).
full_handshakes() {
    local server=$1 url=$2 out seconds=0 end=$((SECONDS + DURATION))
    REQUESTS=0
    while [ "$SECONDS" -lt "$end" ]; do
        out=$(taskset -c "$CLIENT_CPU" h2load -t1 -c"$HANDSHAKE_CONNECTIONS" \
            -n"$HANDSHAKE_CONNECTIONS" -H 'Accept-Encoding: br, gzip' "$url")
        local ok
        ok=$(awk '/^status codes:/{print $3}' <<<"$out")
        if [ "$ok" != "$HANDSHAKE_CONNECTIONS" ]; then
            echo "$server h2load: not every request succeeded:" >&2; echo "$out" >&2; exit 1
        fi
        REQUESTS=$((REQUESTS + ok))
        seconds=$(awk -v s="$seconds" '/^finished in/{t=$3; sub(/,$/, "", t);
            if (t ~ /ms$/) { sub(/ms$/, "", t); t /= 1000 } else { sub(/s$/, "", t) }
            print s + t}' <<<"$out")
    done
    RATE=$(awk -v n="$REQUESTS" -v s="$seconds" 'BEGIN{printf "%.2f", n / s}')
}

declare -A RPS CPU TLS_SEEN
run() { # server row-index
    local server=$1 i=$2 before after cpu_us
    before=$(cpu_ticks "$server")
    load "$server" "$i"
    after=$(cpu_ticks "$server")
    cpu_us=$(python3 -c "print(f'{($after-$before)*1e6/$CLK_TCK/max($REQUESTS,1):.1f}')")
    RPS[$server,$i]+="$RATE "
    CPU[$server,$i]+="$cpu_us "
    echo "  $server ${ROWS[$i]}: $RATE req/s, ${cpu_us} µs CPU/req" >&2
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
ratio() { python3 -c "import sys; a,b=sys.argv[1:]; print(f'{float(a)/float(b):.2f}×' if a and b else '–')" "$1" "$2"; }
cell() { local -n metric=$1; local v=${metric[$2,$3]:-}; if [ -n "$v" ]; then median <<<"$v"; fi; }
or_dash() { echo "${1:-–}"; }

table() {
    printf '\n| row | nginx req/s | tandem req/s | tandem/nginx | µs CPU/req nginx | µs CPU/req tandem | CPU tandem/nginx |\n'
    printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n'
    local i n t cn ct
    for i in "${!ROWS[@]}"; do
        n=$(cell RPS nginx "$i"); t=$(cell RPS tandem "$i")
        cn=$(cell CPU nginx "$i"); ct=$(cell CPU tandem "$i")
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "${ROWS[$i]}" "$(or_dash "${n%.*}")" \
            "$(or_dash "${t%.*}")" "$(ratio "$t" "$n")" "$(or_dash "$cn")" "$(or_dash "$ct")" \
            "$(ratio "$ct" "$cn")"
    done
}

start_nginx
start_tandem
wait_for_https nginx || { echo "nginx does not answer HTTPS:" >&2; cat "$WORK/nginx.log" "$WORK/nginx/logs/error.log" >&2; exit 1; }
TANDEM_TLS=yes
if ! wait_for_https tandem; then
    TANDEM_TLS=no
    echo "tandem does not answer HTTPS with tls.mode = \"files\" on 127.0.0.1:${PORT[tandem]}; measuring nginx alone. Its log:" >&2
    sed 's/^/  /' "$WORK/tandem.log" >&2
    kill "${PID[tandem]}" 2>/dev/null || true
    wait "${PID[tandem]}" 2>/dev/null || true
    PID[tandem]=""
    SERVERS=(nginx)
fi
check_answers

echo "nginx $NGINX_VERSION, tandem $("$TANDEM" --version | awk '{print $2}'); one worker each on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU; $ROUNDS rounds x ${DURATION}s" >&2
# Warm both (first-touch allocations, caches, nginx's open_file_cache).
for s in "${SERVERS[@]}"; do
    taskset -c "$CLIENT_CPU" wrk -t1 -c10 -d1s -H 'Accept-Encoding: br, gzip' \
        "https://127.0.0.1:${PORT[$s]}/page.html" >/dev/null
done
for round in $(seq "$ROUNDS"); do
    for i in "${!ROWS[@]}"; do
        n=${#SERVERS[@]}
        for k in $(seq 0 $((n - 1))); do
            run "${SERVERS[$(((k + round + i) % n))]}" "$i"
        done
    done
done
stop_servers
table
printf '\n(medians of %s rounds of %s s; CPU per request from /proc/<pid>/stat utime+stime of the serving processes; wrk and h2load pinned to CPU %s; negotiated over HTTP/2:' "$ROUNDS" "$DURATION" "$CLIENT_CPU"
for s in "${SERVERS[@]}"; do printf ' %s: %s;' "$s" "${TLS_SEEN[$s]:-?}"; done
printf ')\n'
if [ "$TANDEM_TLS" = no ]; then
    echo "tandem did not speak TLS, so only nginx was measured: build a tandem with TLS serving (tls.mode = \"files\") and run again" >&2
    exit 1
fi
