#!/usr/bin/env bash
# Instructions per request of tandem's request pipeline, layer by layer, and of the framework
# floor (bench/floor) with no and with seven pass-through `from_fn` layers (and, on request,
# actix-files serving the same directory). Counted by callgrind, so the numbers do not depend on
# the machine's load. User-space instructions only: the kernel's share of a request (recv and
# send; for actix-files also open, stat and read of the file) is not in them.
#
# Each server runs under callgrind with one worker; per row, after a warm-up, the counters are
# zeroed, h2load sends exactly $REQUESTS keep-alive HTTP/1.1 requests on one connection, and the
# counters are dumped. Per request = the dump's total / $REQUESTS; a layer's inclusive cost is
# read with `callgrind_annotate --inclusive=yes` from the functions named in bench/layer_cost.py.
#
#   bench/layer_cost.sh                      # 20,000 requests per row (a few minutes)
#   REQUESTS=2000 bench/layer_cost.sh
#   TANDEM_BIN=... FLOOR_BIN=... bench/layer_cost.sh   # no builds
#   KEEP=/tmp/dir bench/layer_cost.sh        # keep the callgrind dumps there
#   PROFILES=tandem bench/layer_cost.sh      # only some of: tandem floor-0 floor-7 actix-files
#
# Needs valgrind and h2load (nghttp2-client); installs them with apt-get when missing.
set -euo pipefail

REQUESTS=${REQUESTS:-20000}
WARMUP=${WARMUP:-2000}
PROFILES=${PROFILES:-tandem floor-0 floor-7}
BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$BENCH")
# shellcheck source=bench/corpus.sh
source "$BENCH/corpus.sh"

need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v brotli >/dev/null || need+=(brotli)
install_missing "${need[@]}"

release_servers

WORK=$(mktemp -d /tmp/tandem-layer-cost.XXXXXX)
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
finish() {
    stop_server
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$WORK"/*.callgrind* "$KEEP"/ 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap finish EXIT
ROOT="$WORK/htdocs"
mkdir -p "$WORK/public"
make_corpus "$ROOT"

# row name | path | extra header (@ETAG@ = the server's own tag for /page.html) | status class
ROWS=(
    "html|/page.html||2xx"
    "304|/page.html|If-None-Match: @ETAG@|3xx"
    "404|/missing.html||4xx"
)

# profile NAME PORT COMMAND...: runs COMMAND (listening on PORT) under callgrind and dumps one
# profile per row.
profile() {
    local name=$1 port=$2
    shift 2
    # From $WORK, where no tandem.toml is found: built-in defaults plus the variables given.
    (cd "$WORK" && exec valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.callgrind" \
        "$@" >"$WORK/$name.log" 2>&1) &
    SERVER_PID=$!
    wait_for_port "$port" "$WORK/$name.log"
    local etag
    etag=$(curl -s -o /dev/null -D - -H 'Accept-Encoding: br, gzip' "http://127.0.0.1:$port/page.html" \
        | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}')
    local row label path extra class args out
    for row in "${ROWS[@]}"; do
        IFS='|' read -r label path extra class <<<"$row"
        args=(--h1 -c1 -t1 -H 'Accept-Encoding: br, gzip')
        [ -n "$extra" ] && args+=(-H "${extra//@ETAG@/$etag}")
        h2load "${args[@]}" -n "$WARMUP" "http://127.0.0.1:$port$path" >/dev/null
        callgrind_control --zero "$SERVER_PID" >/dev/null 2>&1
        out=$(h2load "${args[@]}" -n "$REQUESTS" "http://127.0.0.1:$port$path")
        callgrind_control --dump="$name-$label" "$SERVER_PID" >/dev/null 2>&1
        # Every request answered, with the status the row is about; otherwise the count is wrong.
        # (h2load counts 4xx as "failed", so the status codes line is what says it went right.)
        grep -q "requests: $REQUESTS total, $REQUESTS started, $REQUESTS done" <<<"$out" \
            || { echo "$name $label: not all $REQUESTS requests were answered:" >&2; echo "$out" >&2; exit 1; }
        local counted
        counted=$(awk -v c="$class" '/^status codes:/{for(i=1;i<NF;i++) if($(i+1)~"^"c) print $i}' <<<"$out" | tr -d ,)
        [ "$counted" = "$REQUESTS" ] || { echo "$name $label: $counted of $REQUESTS were $class" >&2; exit 1; }
        echo "  $name $label: $REQUESTS requests profiled" >&2
    done
    stop_server
}

echo "callgrind, $REQUESTS requests per row after $WARMUP to warm up, 1 worker, h2load -c1 --h1" >&2
# tandem's settings come from the environment (valgrind would not follow an `env` wrapper's
# exec): built-in defaults plus these, since $WORK has no tandem.toml.
unset TANDEM_CONFIG PORT
export TANDEM__SERVER__WORKERS=1 TANDEM__RATE_LIMIT__ENABLED=false RUST_LOG=warn
export TANDEM__STATIC__HTDOCS="$ROOT" TANDEM__STATIC__PUBLIC="$WORK/public"
TANDEM__SERVER__PORT=$(free_port)
export TANDEM__SERVER__PORT
for p in $PROFILES; do
    case $p in
        tandem) profile tandem "$TANDEM__SERVER__PORT" "$TANDEM" serve ;;
        floor-0 | floor-7)
            port=$(free_port)
            profile "$p" "$port" "$FLOOR" --htdocs "$ROOT" --port "$port" --workers 1 --layers "${p#floor-}"
            ;;
        actix-files)
            port=$(free_port)
            profile "$p" "$port" "$FLOOR" --files "$ROOT" --port "$port" --workers 1
            ;;
        *) echo "PROFILES: unknown profile '$p' (tandem, floor-0, floor-7, actix-files)" >&2; exit 2 ;;
    esac
done

python3 "$BENCH/layer_cost.py" "$REQUESTS" "$WORK"
