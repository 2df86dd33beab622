#!/usr/bin/env bash
# Runs the Autobahn TestSuite fuzzingclient (cases 1-7 and 9-10) against tandem's /socket and
# fails unless every case is OK, NON-STRICT or INFORMATIONAL (docs/reference.md §7).
#
# wstest is Python 2 only: it runs from its own virtualenv built from a Python 2.7 interpreter
# (pyenv's 2.7.18, or AUTOBAHN_PYTHON2), with the pins in requirements-py27.txt. The virtualenv is
# cached (AUTOBAHN_VENV) and rebuilt when the pins change. Nothing is written to the repository:
# the build goes to cargo's target directory, the config, log and report to a temporary directory
# (kept and printed when AUTOBAHN_KEEP=1 or when a case fails).
#
#   tests/autobahn/run.sh                           # debug build (the one `cargo test` made)
#   AUTOBAHN_PROFILE=release tests/autobahn/run.sh  # release build
# Measured on 2 busy cores: 268 s of wstest with the debug build, 248 s with release; the suite's
# own pacing dominates, so the default spares CI a release compile.
#   AUTOBAHN_CASES='["1.*"]' tests/autobahn/run.sh
#   tests/autobahn/run.sh --find-python2           # only print the Python 2.7 it would use (CI
#                                                   # runs this first, to fail before the long steps)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
requirements="$here/requirements-py27.txt"
profile="${AUTOBAHN_PROFILE:-dev}"
cases="${AUTOBAHN_CASES:-[\"1.*\", \"2.*\", \"3.*\", \"4.*\", \"5.*\", \"6.*\", \"7.*\", \"9.*\", \"10.*\"]}"
venv="${AUTOBAHN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/autobahn-py27}"
# Section 9 sends messages of up to 16 MiB.
max_message_bytes=$((16 * 1024 * 1024))

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'autobahn: %s\n' "$*" >&2; exit 1; }

# Debian ships no Python 2 any more: pyenv's build (found through `pyenv root`, or in
# $PYENV_ROOT or ~/.pyenv when pyenv is not on PATH) or an explicit AUTOBAHN_PYTHON2.
find_python2() {
  local how
  how="install one with pyenv (pyenv install 2.7.18) or set AUTOBAHN_PYTHON2 to a python2.7"
  if [[ -n "${AUTOBAHN_PYTHON2:-}" ]]; then
    [[ -x "$AUTOBAHN_PYTHON2" ]] ||
      die "AUTOBAHN_PYTHON2=$AUTOBAHN_PYTHON2 is not an executable: $how"
    echo "$AUTOBAHN_PYTHON2"
    return
  fi
  local roots=("${PYENV_ROOT:-$HOME/.pyenv}") root candidate
  if command -v pyenv >/dev/null 2>&1; then roots=("$(pyenv root)" "${roots[@]}"); fi
  for root in "${roots[@]}"; do
    for candidate in "$root"/versions/2.7*/bin/python2.7; do
      [[ -x "$candidate" ]] && { echo "$candidate"; return; }
    done
  done
  command -v python2.7 || command -v python2 ||
    die "no Python 2.7 interpreter found, and wstest (the Autobahn TestSuite) needs one: $how"
}

if [[ "${1:-}" == --find-python2 ]]; then
  find_python2
  exit 0
fi

# Builds the wstest virtualenv unless a complete one for the same pins is cached.
ensure_wstest() {
  local stamp="$venv/.requirements.sha256" want
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [[ -x "$venv/bin/wstest" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return
  fi
  local python2 boot
  python2="$(find_python2)"
  say "building the wstest virtualenv in $venv from $python2"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  if "$python2" -m virtualenv --version >/dev/null 2>&1; then
    "$python2" -m virtualenv -q "$venv"
  else
    # The last virtualenv that can still create Python 2.7 environments, in a throwaway venv.
    boot="$(mktemp -d)"
    python3 -m venv "$boot"
    "$boot/bin/pip" install -q 'virtualenv<20.22'
    "$boot/bin/virtualenv" -q -p "$python2" "$venv"
    rm -rf "$boot"
  fi
  # PyPI downloads from Python 2's old TLS stack fail now and then; retry before giving up.
  local attempt
  for attempt in 1 2 3; do
    if "$venv/bin/pip" install -q --no-python-version-warning -r "$requirements"; then
      echo "$want" >"$stamp"
      return
    fi
    say "pip install failed (attempt $attempt of 3)"
    sleep 5
  done
  die "could not install the Autobahn TestSuite into $venv"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ensure_wstest

say "building tandem (profile $profile)"
(cd "$repo" && cargo build --quiet --profile "$profile" --bin tandem)
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
[[ "$profile" == dev ]] && bin="$target_dir/debug/tandem" || bin="$target_dir/$profile/tandem"

work="$(mktemp -d "${TMPDIR:-/tmp}/tandem-autobahn.XXXXXX")"
tandem_pid=""
cleanup() {
  local status=$?
  if [[ -n "$tandem_pid" ]] && kill -0 "$tandem_pid" 2>/dev/null; then
    kill -TERM "$tandem_pid" 2>/dev/null || true
    wait "$tandem_pid" 2>/dev/null || true
  fi
  if [[ "${AUTOBAHN_KEEP:-0}" == 1 || $status -ne 0 ]]; then
    say "report, config and server log kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

port="$(free_port)"
cat >"$work/tandem.toml" <<TOML
[server]
port = $port
shutdown_timeout_secs = 5

[static]
mode = "nginx"

# wstest opens a connection per case, far faster than a client would.
[rate_limit]
enabled = false

[websocket]
max_message_bytes = $max_message_bytes
TOML

say "starting tandem on 127.0.0.1:$port"
(cd "$work" && RUST_LOG="${RUST_LOG:-warn}" exec "$bin" serve --config "$work/tandem.toml") \
  >"$work/tandem.log" 2>&1 &
tandem_pid=$!
for _ in $(seq 100); do
  "$bin" healthcheck --config "$work/tandem.toml" >/dev/null 2>&1 && break
  kill -0 "$tandem_pid" 2>/dev/null || die "tandem exited at start-up: $(cat "$work/tandem.log")"
  sleep 0.1
done

cat >"$work/fuzzingclient.json" <<JSON
{
  "outdir": "$work/reports",
  "servers": [{"agent": "tandem", "url": "ws://127.0.0.1:$port/socket"}],
  "cases": $cases,
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON

say "running wstest -m fuzzingclient (cases $cases)"
started=$SECONDS
(cd "$work" && "$venv/bin/wstest" -m fuzzingclient -s fuzzingclient.json) >"$work/wstest.log" 2>&1 ||
  die "wstest failed: $(tail -n 20 "$work/wstest.log")"
elapsed=$((SECONDS - started))

kill -TERM "$tandem_pid"
stop_status=0
wait "$tandem_pid" || stop_status=$?
tandem_pid=""
[[ $stop_status -eq 0 ]] || die "tandem exited with status $stop_status on SIGTERM; log: $work/tandem.log"

python3 - "$work/reports/index.json" "$elapsed" <<'PY'
import collections, json, sys

index_path, elapsed = sys.argv[1], int(sys.argv[2])
with open(index_path) as f:
    results = json.load(f)["tandem"]

passing = {"OK", "NON-STRICT", "INFORMATIONAL"}
# "FAILED BY CLIENT" on the closing handshake means wstest stopped waiting (0.5 s) for the server
# to close TCP first: actix lingers up to server.client_disconnect_timeout_ms for the client's
# FIN instead. The close frames themselves were right (else the verdict is WRONG CODE/UNCLEAN).
passing_close = passing | {"FAILED BY CLIENT"}
by_verdict = collections.Counter(r["behavior"] for r in results.values())
close_verdicts = collections.Counter(r["behaviorClose"] for r in results.values())

def case_key(case):
    return [int(part) for part in case.split(".")]

failed = sorted(
    (case for case, r in results.items()
     if r["behavior"] not in passing or r["behaviorClose"] not in passing_close),
    key=case_key,
)
print("Autobahn fuzzingclient: %d cases in %d s" % (len(results), elapsed))
print("  by verdict:       " + ", ".join("%s %d" % kv for kv in sorted(by_verdict.items())))
print("  closing handshake: " + ", ".join("%s %d" % kv for kv in sorted(close_verdicts.items())))
for case in failed:
    r = results[case]
    print("  FAILED %s: behavior %s, close %s" % (case, r["behavior"], r["behaviorClose"]))
if failed or not results:
    sys.exit(1)
print("%d passed, 0 failed" % len(results))
PY
