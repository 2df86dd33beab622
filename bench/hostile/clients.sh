#!/usr/bin/env bash
# Hostile clients (issue 11, BENCHMARKS.md "Hostile clients"): each scenario starts its own
# release tandem on 127.0.0.1 (one worker, rate limit off), attacks it for SECONDS while a
# normal client measures `GET /json` in its own process, prints its figures and stops the
# server by PID. Python standard library only; `curl` for one download.
#
#   bench/hostile/clients.sh                        # every scenario, 20 s each (~3 min in all)
#   bench/hostile/clients.sh slowloris bodies       # some of them
#   SECONDS_EACH=10 TANDEM_BIN=/path/to/tandem bench/hostile/clients.sh
#   WORKERS=2 bench/hostile/clients.sh slowloris    # more workers
#
# Scenarios: slowloris (1,000 connections trickling header bytes), slow_readers (1,000 clients
# reading a 1 MiB file a byte a second), idle_keepalive (10,000 idle connections, then the
# server.max_connections cap), bodies (100 MB uploads to /api/echo and /api/status), oversized
# (414/431 and actix's own limits), slow_head (the 408, and a slow second head).
set -euo pipefail

SECONDS_EACH=${SECONDS_EACH:-20}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=$REPO/bench
# shellcheck source=bench/corpus.sh
source "$BENCH/corpus.sh"
release_tandem

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
    scenarios=(slowloris slow_readers idle_keepalive bodies oversized slow_head)
fi
# 10,000 idle connections need that many descriptors on each side; the script raises its soft
# limit to the hard one, and tandem inherits it.
ulimit -n "$(ulimit -Hn)"
for scenario in "${scenarios[@]}"; do
    # Each scenario is bounded: its attack lasts SECONDS_EACH, the rest a few seconds more.
    timeout $((SECONDS_EACH * 3 + 60)) \
        python3 "$REPO/bench/hostile/clients.py" "$TANDEM" "$scenario" "$SECONDS_EACH"
    echo
done
