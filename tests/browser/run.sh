#!/usr/bin/env bash
# Browser check of the shipped status page (docs/reference.md §1): headless Chromium loads `/`
# from a real tandem, and the rendered DOM must show live /api/status data, a message echoed
# over /socket (the page greets the server on connect, so a non-interactive DOM dump proves the
# round trip), and a traffic chart from /api/metrics that moves between two loads.
#
#   tests/browser/run.sh                                   starts target/{release,debug}/tandem
#   TANDEM_BIN=path/to/tandem tests/browser/run.sh         starts that binary
#   TANDEM_BROWSER_URL=http://127.0.0.1:8080/ tests/browser/run.sh   checks a running deployment
#
# Artifacts land in $TANDEM_BROWSER_OUT (default: a fresh temporary directory, printed at the
# end): dom.html, screenshot.png, tandem.log, chromium-*.log. Installs Debian's chromium when it
# is missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT="${TANDEM_BROWSER_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/tandem-browser.XXXXXX")}"
GREETING="hello from the status page"
EXPECTED_IP="${TANDEM_BROWSER_EXPECTED_IP:-127.0.0.1}"
mkdir -p "$OUT"
rm -f "$OUT/dom.html" "$OUT/screenshot.png"

find_chromium() {
  local candidate
  for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if ! CHROMIUM="$(find_chromium)"; then
  echo "browser: installing chromium (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
  CHROMIUM="$(find_chromium)"
fi

server_pid=""
profiles=()
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if ((${#profiles[@]})); then rm -rf "${profiles[@]}"; fi
}
trap cleanup EXIT

URL="${TANDEM_BROWSER_URL:-}"
if [[ -z "$URL" ]]; then
  BIN="${TANDEM_BIN:-}"
  if [[ -z "$BIN" ]]; then
    for candidate in target/release/tandem target/debug/tandem; do
      if [[ -x "$candidate" && ( -z "$BIN" || "$candidate" -nt "$BIN" ) ]]; then BIN="$candidate"; fi
    done
  fi
  if [[ -z "$BIN" ]]; then
    cargo build --quiet
    BIN=target/debug/tandem
  fi
  PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  # The shipped site from this checkout, nothing from the caller's configuration.
  env -u TANDEM_CONFIG TANDEM__SERVER__HOST=127.0.0.1 TANDEM__SERVER__PORT="$PORT" \
    TANDEM__STATIC__MODE=app TANDEM__STATIC__HTDOCS=htdocs TANDEM__STATIC__PUBLIC=public \
    RUST_LOG=info "$BIN" serve >"$OUT/tandem.log" 2>&1 &
  server_pid=$!
  URL="http://127.0.0.1:$PORT/"
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "${URL}healthz" 2>/dev/null && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "browser: $BIN exited before answering:" >&2
      cat "$OUT/tandem.log" >&2
      exit 1
    fi
    sleep 0.1
  done
fi
echo "browser: checking $URL with $CHROMIUM" >&2

chromium() {
  local profile
  profile="$(mktemp -d "${TMPDIR:-/tmp}/tandem-chromium.XXXXXX")"
  profiles+=("$profile")
  timeout 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --user-data-dir="$profile" "$@"
}

passed=0
failed=0
check() {
  local name="$1" pattern="$2" file="$3"
  if [[ -f "$file" ]] && grep -Eq -- "$pattern" "$file"; then
    echo "PASS $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    failed=$((failed + 1))
  fi
}

curl -fsS "$URL" -o "$OUT/index.html" || true
check "/ serves the status page" 'id="socket-log"' "$OUT/index.html"

chromium --virtual-time-budget=5000 --dump-dom "$URL" >"$OUT/dom.html" 2>"$OUT/chromium-dom.log" || true
# The traffic chart is fed by samples the server takes every 2 s: send 404s (under /api, so tandem
# answers them in both static modes; fewer than the rate limit's default burst), wait for two
# more samples, and load the page again; the chart must have moved.
for _ in $(seq 1 6); do curl -s -o /dev/null "${URL}api/no-such-route-for-the-chart" || true; done
sleep 4.5
chromium --virtual-time-budget=5000 --dump-dom "$URL" >"$OUT/dom-later.html" 2>"$OUT/chromium-dom-later.log" || true
chromium --virtual-time-budget=5000 --window-size=1200,1100 --hide-scrollbars \
  --screenshot="$OUT/screenshot.png" "$URL" >/dev/null 2>"$OUT/chromium-screenshot.log" || true

check "the page shows the status from /api/status" 'id="f-status"[^>]*>healthy<' "$OUT/dom.html"
check "the page shows the client address $EXPECTED_IP" \
  "id=\"f-client_ip\"[^>]*>${EXPECTED_IP//./\\.}<" "$OUT/dom.html"
check "the page shows a request id" 'id="f-request_id"[^>]*>[A-Za-z0-9._:-]+<' "$OUT/dom.html"
check "the page sent its greeting over /socket" \
  "<li data-dir=\"out\">(<[^>]*>[^<]*</[a-z]+>)*<span class=\"text\">$GREETING</span>" "$OUT/dom.html"
check "the page shows the greeting echoed over /socket" \
  "<li data-dir=\"in\">(<[^>]*>[^<]*</[a-z]+>)*<span class=\"text\">$GREETING</span>" "$OUT/dom.html"
# From the two dumps: the chart redrew on every poll, has at least two points, shows the 404s as
# a 4xx rate above zero, and its 4xx line changed between the loads.
chart_verdict="$(python3 - "$OUT/dom.html" "$OUT/dom-later.html" <<'PY'
import re, sys
def chart(path):
    try:
        dom = open(path, encoding="utf-8").read()
    except OSError:
        return None
    svg = re.search(r'<svg id="traffic-chart"[^>]*>', dom)
    line = re.search(r'id="traffic-4xx" d="([^"]*)"', dom)
    if not svg or not line:
        return None
    attr = lambda name: int(re.search(name + r'="(\d+)"', svg.group(0)).group(1))
    ys = [float(y) for y in re.findall(r'[ML]-?[\d.]+ (-?[\d.]+)', line.group(1))]
    return attr("data-points"), attr("data-updates"), line.group(1), ys
first, later = chart(sys.argv[1]), chart(sys.argv[2])
if later is None:
    print("no chart in the second load")
elif later[1] < 2:
    print("the chart was drawn %d time(s), not redrawn on a later poll" % later[1])
elif later[0] < 2:
    print("the chart has %d point(s)" % later[0])
elif not any(y < 170 for y in later[3]):
    print("the 404s sent before the second load do not show as a 4xx rate")
elif first is not None and first[2] == later[2]:
    print("the 4xx line did not change between the two loads")
else:
    print("ok (%d points, %d redraws)" % (later[0], later[1]))
PY
)"
if [[ "$chart_verdict" == ok* ]]; then
  echo "PASS the traffic chart renders and moves with the server's figures: $chart_verdict"
  passed=$((passed + 1))
else
  echo "FAIL the traffic chart renders and moves with the server's figures: $chart_verdict"
  failed=$((failed + 1))
fi
if [[ -s "$OUT/screenshot.png" ]]; then
  echo "PASS a screenshot was taken ($OUT/screenshot.png)"
  passed=$((passed + 1))
else
  echo "FAIL a screenshot was taken"
  failed=$((failed + 1))
fi

echo "browser: $passed passed, $failed failed (artifacts in $OUT)"
if ((failed)); then
  echo "browser: see $OUT (dom.html, screenshot.png, tandem.log, chromium-*.log)" >&2
  exit 1
fi
