#!/usr/bin/env bash
# Static-file throughput: tandem (static.mode = "app") against nginx with gzip_static and
# brotli_static, against the framework floor (bench/floor: bare actix-web answering the same rows
# from memory, so tandem's own overhead over actix-web shows) and against actix-files serving the
# same directory, all on the same corpus. Two runs: one worker each pinned to core 0 with wrk
# pinned to core 1, then two workers each, unpinned, wrk on the same two cores. Within a run,
# the order of the servers rotates from row to row and round to round, so drift on a shared
# machine hits all alike.
#
#   bench/static.sh                 # 3 rounds x 5 s per row and server, both runs (~10 minutes)
#   ROUNDS=1 DURATION=2 bench/static.sh
#   RUNS=pinned bench/static.sh     # only the one-worker run ("pinned", "both" or "pinned both")
#   TANDEM_BIN=/path/to/tandem FLOOR_BIN=/path/to/tandem-floor bench/static.sh   # no builds
#
# Needs root for apt-get only when nginx, its brotli module, wrk or brotli are missing.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-50}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
RUNS=${RUNS:-pinned both}
BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$BENCH")
# shellcheck source=bench/corpus.sh
source "$BENCH/corpus.sh"

install_bench_tools

# TANDEM_BIN / FLOOR_BIN skip the builds (e.g. to compare two binaries).
release_servers

WORK=$(mktemp -d /tmp/tandem-bench.XXXXXX)
chmod 755 "$WORK"  # nginx workers run as an unprivileged user
declare -A PID PORT
SERVERS=(nginx tandem floor actix-files)
trap 'stop_servers; rm -rf "$WORK"' EXIT

ROOT="$WORK/htdocs"
mkdir -p "$WORK/public" "$WORK/nginx/logs"
make_corpus "$ROOT"
for s in "${SERVERS[@]}"; do PORT[$s]=$(free_port); done

# start_servers WORKERS CPUSET: every server with WORKERS workers, under `taskset -c CPUSET`.
start_servers() {
    local workers=$1 cpus=$2
    nginx_conf "$workers" 100000 "listen 127.0.0.1:${PORT[nginx]};
        root $ROOT;"
    taskset -c "$cpus" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
    PID[nginx]=$!
    # From $WORK, where no tandem.toml is found: built-in defaults plus these variables.
    (cd "$WORK" && exec env -u TANDEM_CONFIG -u PORT \
        TANDEM__SERVER__PORT="${PORT[tandem]}" TANDEM__SERVER__WORKERS="$workers" \
        TANDEM__RATE_LIMIT__ENABLED=false \
        TANDEM__STATIC__HTDOCS="$ROOT" TANDEM__STATIC__PUBLIC="$WORK/public" RUST_LOG=warn \
        taskset -c "$cpus" "$TANDEM" serve 2>"$WORK/tandem.log") &
    PID[tandem]=$!
    taskset -c "$cpus" "$FLOOR" --htdocs "$ROOT" --port "${PORT[floor]}" --workers "$workers" \
        2>"$WORK/floor.log" &
    PID[floor]=$!
    taskset -c "$cpus" "$FLOOR" --files "$ROOT" --port "${PORT[actix-files]}" --workers "$workers" \
        2>"$WORK/actix-files.log" &
    PID[actix-files]=$!
    local s
    for s in "${SERVERS[@]}"; do
        wait_for_port "${PORT[$s]}" "$WORK/$s.log"
    done
}


header_of() { # port path header-name [extra curl args]
    local port=$1 path=$2 name=$3
    shift 3
    curl -s -o /dev/null -D - -H 'Accept-Encoding: br, gzip' "$@" "http://127.0.0.1:$port$path" \
        | tr -d '\r' | awk -F': ' -v n="$name" 'tolower($1)==n{print $2}'
}

# Sanity: each server answers each row as the table claims; actix-files has no precompressed
# siblings, so it sends the identity bytes (noted under the table).
check_answers() {
    local s path enc
    for s in nginx tandem floor; do
        for path in /page.html /app.js; do
            enc=$(header_of "${PORT[$s]}" "$path" content-encoding)
            [ "$enc" = br ] || { echo "$s $path: expected br, got '$enc'" >&2; exit 1; }
        done
    done
    local code
    for s in "${SERVERS[@]}"; do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$s]}/missing.html")
        [ "$code" = 404 ] || { echo "$s /missing.html: expected 404, got $code" >&2; exit 1; }
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: ${ETAG[$s]}" \
            -H 'Accept-Encoding: br, gzip' "http://127.0.0.1:${PORT[$s]}/page.html")
        [ "$code" = 304 ] || { echo "$s: If-None-Match: expected 304, got $code" >&2; exit 1; }
    done
}

# row name | path | extra header (for the server's own ETag: @ETAG@) | servers that answer it
ROWS=(
    "6 KB HTML, br|/page.html||nginx tandem floor actix-files"
    "150 KB JS, br|/app.js||nginx tandem floor actix-files"
    "20 KB PNG, identity|/image.png||nginx tandem floor actix-files"
    "304 If-None-Match|/page.html|If-None-Match: @ETAG@|nginx tandem floor actix-files"
    "404|/missing.html||nginx tandem floor actix-files"
)

declare -A RPS P99 CPU ETAG
run() { # label server row-index wrk-threads client-cpus
    local label=$1 server=$2 i=$3 threads=$4 client_cpus=$5
    IFS='|' read -r name path extra _ <<<"${ROWS[$i]}"
    local args=(-t"$threads" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H 'Accept-Encoding: br, gzip')
    [ -n "$extra" ] && args+=(-H "${extra//@ETAG@/${ETAG[$server]}}")
    local before after out
    before=$(cpu_ticks "$server")
    out=$(taskset -c "$client_cpus" wrk "${args[@]}" "http://127.0.0.1:${PORT[$server]}$path")
    after=$(cpu_ticks "$server")
    local rps requests p99 cpu_us
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    requests=$(awk '/requests in/{print $1}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out")
    cpu_us=$(python3 -c "print(f'{($after-$before)*1e6/$CLK_TCK/max($requests,1):.1f}')")
    RPS[$label,$server,$i]+="$rps "
    P99[$label,$server,$i]+="$(to_ms "$p99") "
    CPU[$label,$server,$i]+="$cpu_us "
    echo "  $label round: $server ${name}: $rps req/s, p99 $p99, ${cpu_us} µs CPU/req" >&2
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
to_ms() { python3 -c "
import re,sys
v=sys.argv[1]; m=re.match(r'([0-9.]+)(us|ms|s)$',v)
print(f'{float(m.group(1))*{\"us\":1e-3,\"ms\":1,\"s\":1e3}[m.group(2)]:.2f}' if m else v)" "$1"; }
ratio() { python3 -c "import sys; a,b=sys.argv[1:]; print(f'{float(a)/float(b):.2f}×' if a and b else '–')" "$1" "$2"; }

measure() { # label workers server-cpus client-cpus wrk-threads
    local label=$1 workers=$2 server_cpus=$3 client_cpus=$4 threads=$5
    start_servers "$workers" "$server_cpus"
    local s
    for s in "${SERVERS[@]}"; do ETAG[$s]=$(header_of "${PORT[$s]}" /page.html etag); done
    check_answers
    echo "$label: $workers worker(s) per server on CPU $server_cpus, wrk -t$threads on CPU $client_cpus" >&2
    # Warm every server (caches, open_file_cache, first-touch allocations).
    for s in "${SERVERS[@]}"; do
        taskset -c "$client_cpus" wrk -t1 -c10 -d1s -H 'Accept-Encoding: br, gzip' \
            "http://127.0.0.1:${PORT[$s]}/page.html" >/dev/null
    done
    local round i k servers
    for round in $(seq "$ROUNDS"); do
        for i in "${!ROWS[@]}"; do
            IFS='|' read -r _ _ _ servers <<<"${ROWS[$i]}"
            read -r -a servers <<<"$servers"
            local n=${#servers[@]}
            for k in $(seq 0 $((n - 1))); do
                run "$label" "${servers[$(((k + round + i) % n))]}" "$i" "$threads" "$client_cpus"
            done
        done
    done
    stop_servers
    table "$label"
}

cell() { # metric label server row
    local -n metric=$1
    local v=${metric[$2,$3,$4]:-}
    if [ -n "$v" ]; then median <<<"$v"; fi
}
or_dash() { echo "${1:-–}"; }

table() {
    local label=$1 i name
    printf '\n%s: req/s\n\n' "$label"
    printf '| row | nginx | tandem | floor | actix-files | tandem/nginx | floor/nginx | tandem/floor | actix-files/tandem |\n'
    printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
    for i in "${!ROWS[@]}"; do
        IFS='|' read -r name _ _ _ <<<"${ROWS[$i]}"
        local n t f a
        n=$(cell RPS "$label" nginx "$i"); t=$(cell RPS "$label" tandem "$i")
        f=$(cell RPS "$label" floor "$i"); a=$(cell RPS "$label" actix-files "$i")
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(or_dash "${n%.*}")" \
            "$(or_dash "${t%.*}")" "$(or_dash "${f%.*}")" "$(or_dash "${a%.*}")" \
            "$(ratio "$t" "$n")" "$(ratio "$f" "$n")" "$(ratio "$t" "$f")" "$(ratio "$a" "$t")"
    done
    printf '\n%s: p99 latency (ms) and CPU per request (µs)\n\n' "$label"
    printf '| row | p99 nginx | p99 tandem | p99 floor | p99 actix-files | µs nginx | µs tandem | µs floor | µs actix-files | µs tandem/floor |\n'
    printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
    for i in "${!ROWS[@]}"; do
        IFS='|' read -r name _ _ _ <<<"${ROWS[$i]}"
        local cells=() s k
        for s in "${SERVERS[@]}"; do cells+=("$(cell P99 "$label" "$s" "$i")"); done
        for s in "${SERVERS[@]}"; do cells+=("$(cell CPU "$label" "$s" "$i")"); done
        local tandem_over_floor
        tandem_over_floor=$(ratio "${cells[5]}" "${cells[6]}")
        for k in "${!cells[@]}"; do cells[k]=$(or_dash "${cells[k]}"); done
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "${cells[@]}" \
            "$tandem_over_floor"
    done
}

echo "nginx $(nginx -v 2>&1 | sed 's/.*\///'), tandem $("$TANDEM" --version | awk '{print $2}'); $ROUNDS rounds x ${DURATION}s, $CONNECTIONS connections" >&2
for r in $RUNS; do
    case $r in
        pinned) measure "1 worker, pinned" 1 "$SERVER_CPU" "$CLIENT_CPU" 1 ;;
        both) measure "2 workers, unpinned" 2 "$SERVER_CPU,$CLIENT_CPU" "$SERVER_CPU,$CLIENT_CPU" 2 ;;
        *) echo "RUNS: unknown run '$r' (pinned, both)" >&2; exit 2 ;;
    esac
done
printf '\n(medians of %s rounds of %s s; CPU per request from /proc/<pid>/stat utime+stime of the serving processes; floor = bench/floor, bare actix-web with the same bytes from memory; actix-files has no precompressed siblings and sends identity bodies; – = the server has no such row)\n' "$ROUNDS" "$DURATION"
