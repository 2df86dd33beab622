#!/usr/bin/env bash
# Restarts under steady load (docs/reference.md §9 "Socket activation", §10 nginx.conf.example):
# wrk keeps GETs going to /api/status and a static file (alternately) while tandem restarts, and
# a Lua script counts every response that is not 2xx; wrk counts the socket errors (connect
# refused, read/write reset, timeout) itself. Three scenarios, each run RUNS times:
#   (a) socket-activated: an activator (systemd's part, in Python below) holds the listening
#       socket and restarts tandem on it the way `systemctl restart tandem` does: SIGTERM, wait
#       for the exit, start the new process;
#   (b) two instances behind the real nginx.conf.example (its app-mode variant, its commented
#       two-instance upstream), restarted one after the other;
#   (c) the baseline: one instance, no socket activation, SIGTERM and start again.
# wrk's latency starts once a connection is established, so a SYN waiting for its retry is not
# in it; a request waiting in an activated socket's queue is.
# It prints requests, non-2xx and socket errors per scenario and run, and exits non-zero unless
# (a) and (b) are all zero. Everything listens on 127.0.0.1; tandem is a release build.
#
#   bench/soak.sh                       # RUNS=3, DURATION=8 s per run of (a) and (c)
#   RUNS=1 DURATION=6 bench/soak.sh
#   TANDEM_BIN=/path/to/tandem bench/soak.sh   # no build
#
# Needs root for apt-get only when nginx, its brotli module, wrk or brotli are missing.
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-8}
# When the restart starts, seconds into a run; and the time between the old process's exit and
# the new one's start in every scenario (a deploy copying a binary, a slow start). tandem itself
# restarts in ~15 ms: with GAP=0 the baseline loses nothing on loopback either, because the SYNs
# its stop sequence drops are retried after 1 s and find the new process (see BENCHMARKS.md).
RESTART_AT=${RESTART_AT:-2}
GAP=${GAP:-1}
BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$BENCH")
# shellcheck source=bench/corpus.sh
source "$BENCH/corpus.sh"

install_bench_tools

release_tandem

WORK=$(mktemp -d /tmp/tandem-soak.XXXXXX)
chmod 755 "$WORK" # nginx workers run as an unprivileged user
PIDS=()
stop_all() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT

make_corpus "$WORK/htdocs"
mkdir -p "$WORK/public" "$WORK/nginx/tmp"

# The settings every tandem here runs with: the corpus, no rate limit (the load is one client),
# a one-second drain as a deployment behind a polling load balancer would have.
TANDEM_ENV=(env -u TANDEM_CONFIG -u PORT
    TANDEM__STATIC__HTDOCS="$WORK/htdocs" TANDEM__STATIC__PUBLIC="$WORK/public"
    TANDEM__RATE_LIMIT__ENABLED=false TANDEM__SERVER__SHUTDOWN_DRAIN_SECS=1 RUST_LOG=warn)

# Waits until GET /page.html on PORT answers (curl gives up after 2 s, since a socket-activated
# port accepts connections before anyone serves them), or fails with LOG.
wait_until_served() {
    local port=$1 log=$2
    for _ in $(seq 100); do
        curl -s -m 2 -o /dev/null "http://127.0.0.1:$port/page.html" && return
        sleep 0.1
    done
    echo "nothing serves 127.0.0.1:$port" >&2
    cat "$log" >&2
    exit 1
}

# tandem on PORT in the background, logging to LOG; sets STARTED to its pid.
start_tandem() {
    local port=$1 log=$2
    (cd "$WORK" && exec "${TANDEM_ENV[@]}" TANDEM__SERVER__PORT="$port" "$TANDEM" serve 2>>"$log") &
    STARTED=$!
    wait_until_served "$port" "$log"
}

# SIGTERM to PID and wait for its exit (tandem's graceful stop).
stop_tandem() {
    kill -TERM "$1"
    wait "$1" 2>/dev/null || true
}

# systemd's part in (a): binds the socket, passes it as fd 3 (LISTEN_FDS=1, LISTEN_PID set by the
# shell that execs tandem, LISTEN_FDNAMES=http), and on SIGHUP restarts tandem as `systemctl
# restart` does: SIGTERM, wait for the exit, start (after GAP seconds, as in the other two
# scenarios). SIGTERM stops tandem and the activator.
cat >"$WORK/activate.py" <<'PY'
import os, signal, socket, subprocess, sys
import time
port, gap, log, cmd = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen(2048)
if sock.fileno() != 3:
    os.dup2(sock.fileno(), 3)
os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="http")
signals = {signal.SIGHUP, signal.SIGTERM}
def start():
    # The child must not inherit the mask below, or tandem would never see its SIGTERM.
    return subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh"] + cmd,
                            pass_fds=(3,), env=env, stderr=open(log, "a"),
                            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, signals))
signal.pthread_sigmask(signal.SIG_BLOCK, signals)
child = start()
while True:
    sig = signal.sigwait(signals)
    child.terminate()
    child.wait()
    if sig == signal.SIGTERM:
        break
    time.sleep(gap)  # the new binary taking its time to arrive, as in (b) and (c)
    child = start()
PY

# The load: GETs alternating between the API and a static file; the report line counts them.
cat >"$WORK/count.lua" <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) n = 0; bad = 0; statuses = {} end
local paths = { "/api/status", "/page.html" }
function request()
    n = n + 1
    return wrk.format("GET", paths[n % 2 + 1])
end
function response(status, headers, body)
    if status < 200 or status > 299 then
        bad = bad + 1
        statuses[status] = (statuses[status] or 0) + 1
    end
end
function done(summary, latency, requests)
    local total, by = 0, {}
    for _, t in ipairs(threads) do
        total = total + t:get("bad")
        for status, count in pairs(t:get("statuses")) do
            by[#by + 1] = status .. "x" .. count
        end
    end
    local e = summary.errors
    local statuses = table.concat(by, ",")
    if statuses == "" then statuses = "-" end
    io.write(string.format("SOAK %d %d %d %d %d %d %s %d\n", summary.requests, total,
        e.connect, e.read, e.write, e.timeout, statuses, math.floor(latency.max / 1000)))
end
LUA

# wrk for SECONDS against PORT in the background (its report goes to OUT); sets LOAD.
start_load() {
    local port=$1 seconds=$2 out=$3
    # A long timeout: a request waiting in the queue during a restart is slow, not lost.
    wrk -t1 -c"$CONNECTIONS" -d"${seconds}s" --timeout 30s -s "$WORK/count.lua" \
        "http://127.0.0.1:$port" >"$out" 2>&1 &
    LOAD=$!
}

# One result row from wrk's report: scenario, run, requests, non-2xx, socket errors.
FAILED=0
report() {
    local scenario=$1 run=$2 out=$3 must_be_clean=$4
    local line
    line=$(grep '^SOAK ' "$out") || { cat "$out" >&2; exit 1; }
    # shellcheck disable=SC2086
    set -- $line
    local requests=$2 non2xx=$3 errors=$(($4 + $5 + $6 + $7)) statuses=$8 max_ms=$9
    printf '%-30s %3s %9s %8s %14s   connect %s, read %s, write %s, timeout %s; non-2xx: %s; max latency %s ms\n' \
        "$scenario" "$run" "$requests" "$non2xx" "$errors" "$4" "$5" "$6" "$7" "$statuses" "$max_ms"
    if [ "$must_be_clean" = yes ] && [ $((non2xx + errors)) -ne 0 ]; then FAILED=1; fi
}

scenario_socket_activated() { # run
    local port out
    port=$(free_port)
    out="$WORK/a.$1.out"
    python3 "$WORK/activate.py" "$port" "$GAP" "$WORK/a.log" \
        "${TANDEM_ENV[@]}" TANDEM__SERVER__PORT="$port" "$TANDEM" serve &
    local activator=$!
    PIDS+=("$activator")
    wait_until_served "$port" "$WORK/a.log"
    start_load "$port" "$DURATION" "$out"
    sleep "$RESTART_AT"
    kill -HUP "$activator"
    wait "$LOAD"
    kill -TERM "$activator"
    wait "$activator" 2>/dev/null || true
    PIDS=()
    report "(a) socket-activated restart" "$1" "$out" yes
}

# The example as shipped, derived and edited as tests/api/nginx_end_to_end.rs does: the app-mode
# variant, this port, paths under $WORK, the commented two-instance upstream enabled; and its
# per-client limit_req lines removed, since all of the load comes from one client.
nginx_conf() { # nginx-port first-port second-port
    sed -e '/^ *# >>> static.mode = "nginx"/,/^ *# <<< static.mode = "nginx"/d' \
        -e 's/^\( *\)#APP-MODE# /\1/' \
        -e "s|listen 80;|listen 127.0.0.1:$1;|" \
        -e "s|^\( *\)server 127.0.0.1:8080;.*|\1# (single server replaced)|" \
        -e "s|# server 127.0.0.1:8080 max_fails|server 127.0.0.1:$2 max_fails|" \
        -e "s|# server 127.0.0.1:8081 max_fails|server 127.0.0.1:$3 max_fails|" \
        -e "s|pid /run/nginx.pid;|pid $WORK/nginx/nginx.pid;|" \
        -e "s|/var/log/nginx/|$WORK/nginx/|" \
        -e "/limit_req zone=/d" \
        -e "s|^http {|http {\n    client_body_temp_path $WORK/nginx/tmp;\n    proxy_temp_path $WORK/nginx/tmp;\n    fastcgi_temp_path $WORK/nginx/tmp;\n    uwsgi_temp_path $WORK/nginx/tmp;\n    scgi_temp_path $WORK/nginx/tmp;|" \
        "$REPO/nginx.conf.example"
}

scenario_two_instances() { # run
    local first_port second_port nginx_port out first second
    first_port=$(free_port)
    second_port=$(free_port)
    nginx_port=$(free_port)
    out="$WORK/b.$1.out"
    start_tandem "$first_port" "$WORK/b1.log"
    first=$STARTED
    start_tandem "$second_port" "$WORK/b2.log"
    second=$STARTED
    PIDS+=("$first" "$second")
    nginx_conf "$nginx_port" "$first_port" "$second_port" >"$WORK/nginx/nginx.conf"
    grep -q "server 127.0.0.1:$second_port max_fails" "$WORK/nginx/nginx.conf" ||
        { echo "nginx.conf.example has no commented two-instance upstream to enable" >&2; exit 1; }
    nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' 2>"$WORK/nginx/stderr.log" &
    local nginx=$!
    PIDS+=("$nginx")
    wait_until_served "$nginx_port" "$WORK/nginx/stderr.log"
    # Long enough for both restarts: stop, GAP, start, fail_timeout (2 s) + 1, stop, GAP, start.
    start_load "$nginx_port" $((RESTART_AT + 2 * (GAP + 3) + 5)) "$out"
    sleep "$RESTART_AT"
    stop_tandem "$first"
    sleep "$GAP"
    start_tandem "$first_port" "$WORK/b1.log"
    first=$STARTED
    sleep 3
    stop_tandem "$second"
    sleep "$GAP"
    start_tandem "$second_port" "$WORK/b2.log"
    second=$STARTED
    PIDS=("$first" "$second" "$nginx")
    wait "$LOAD"
    stop_all
    report "(b) two instances behind nginx" "$1" "$out" yes
}

scenario_plain_restart() { # run
    local port out pid
    port=$(free_port)
    out="$WORK/c.$1.out"
    start_tandem "$port" "$WORK/c.log"
    pid=$STARTED
    PIDS+=("$pid")
    start_load "$port" "$DURATION" "$out"
    sleep "$RESTART_AT"
    stop_tandem "$pid"
    sleep "$GAP"
    start_tandem "$port" "$WORK/c.log"
    PIDS=("$STARTED")
    wait "$LOAD"
    stop_all
    report "(c) baseline: SIGTERM + start" "$1" "$out" no
}

echo "tandem $("$TANDEM" --version 2>/dev/null || echo "(version unknown)"), $(nginx -v 2>&1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "RUNS=$RUNS DURATION=${DURATION}s CONNECTIONS=$CONNECTIONS RESTART_AT=${RESTART_AT}s GAP=${GAP}s"
printf '%-30s %3s %9s %8s %14s\n' scenario run requests non-2xx "socket errors"
for run in $(seq "$RUNS"); do
    scenario_socket_activated "$run"
    scenario_two_instances "$run"
    scenario_plain_restart "$run"
done
if [ "$FAILED" -ne 0 ]; then
    echo "FAILED: (a) or (b) lost requests" >&2
    exit 1
fi
echo "(a) and (b): no request failed"
