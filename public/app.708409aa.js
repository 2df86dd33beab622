// tandem status page: polls /api/status, charts /api/metrics, and runs a WebSocket echo console
// on /socket.
// Plain browser JavaScript, no build step, no third-party code.
(function () {
  "use strict";

  var POLL_MS = 5000;
  var GREETING = "hello from the status page";
  var MAX_LOG_ENTRIES = 200;
  var FIELDS = ["service", "version", "status", "client_ip", "static_mode", "request_id"];

  function byId(id) {
    return document.getElementById(id);
  }

  function setPill(element, state, label) {
    if (!element) return;
    element.setAttribute("data-state", state);
    element.textContent = label;
  }

  function formatUptime(seconds) {
    var s = Math.max(0, Math.floor(Number(seconds) || 0));
    var days = Math.floor(s / 86400);
    var hours = Math.floor((s % 86400) / 3600);
    var minutes = Math.floor((s % 3600) / 60);
    var secs = s % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    if (days > 0) return days + "d " + hours + "h " + pad(minutes) + "m";
    if (hours > 0) return hours + "h " + pad(minutes) + "m " + pad(secs) + "s";
    if (minutes > 0) return minutes + "m " + pad(secs) + "s";
    return secs + "s";
  }

  // ---- /api/status -------------------------------------------------------------------------

  var pollTimer = null;

  function schedulePoll(delay) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(refreshStatus, delay);
  }

  function showStatus(body) {
    FIELDS.forEach(function (key) {
      var element = byId("f-" + key);
      if (element) element.textContent = body[key] == null ? "–" : String(body[key]);
    });
    var uptime = byId("f-uptime");
    uptime.textContent = formatUptime(body.uptime_secs);
    uptime.title = body.uptime_secs + " seconds";
    var healthy = body.status === "healthy";
    setPill(byId("status-pill"), healthy ? "ok" : "warn", healthy ? "healthy" : String(body.status));
    byId("status-updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  function refreshStatus() {
    fetch("/api/status", { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (body) {
          if (response.ok && body) {
            showStatus(body);
            schedulePoll(POLL_MS);
            return;
          }
          // 429: wait as long as the server asks before trying again.
          var retry = Number(response.headers.get("Retry-After")) || POLL_MS / 1000;
          setPill(byId("status-pill"), "warn", response.status === 429 ? "rate limited" : "HTTP " + response.status);
          byId("status-updated").textContent =
            (body && body.detail ? body.detail : response.statusText) + "; retrying in " + retry + " s";
          schedulePoll(Math.max(retry * 1000, POLL_MS));
        });
      })
      .catch(function () {
        setPill(byId("status-pill"), "down", "unreachable");
        byId("status-updated").textContent = "the server did not answer; retrying";
        schedulePoll(POLL_MS);
      });
  }

  // ---- /api/metrics: the traffic chart ------------------------------------------------------

  var CHART_POLL_MS = 2000;
  var CHART_WINDOW_MS = 5 * 60 * 1000;
  var CHART_W = 640;
  var CHART_H = 170;
  var CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"];
  var chartTimer = null;
  var chartUpdates = 0;

  function scheduleChart(delay) {
    clearTimeout(chartTimer);
    chartTimer = setTimeout(refreshChart, delay);
  }

  // A round upper bound for the y axis, so the scale does not jitter with every sample.
  function niceCeiling(value) {
    if (!(value > 0)) return 1;
    var step = Math.pow(10, Math.floor(Math.log(value) / Math.LN10));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (value <= steps[i] * step) return steps[i] * step;
    }
    return 10 * step;
  }

  function pathOf(points, end, valueOf, top) {
    var d = "";
    points.forEach(function (point, i) {
      var x = CHART_W - ((end - point.at) / CHART_WINDOW_MS) * CHART_W;
      var y = CHART_H - (valueOf(point) / top) * (CHART_H - 4);
      d += (i === 0 ? "M" : " L") + x.toFixed(1) + " " + y.toFixed(1);
    });
    return d;
  }

  function drawChart(summary) {
    var points = summary.points || [];
    var end = points.length ? points[points.length - 1].at : Date.now();
    var rateMax = 0;
    var socketMax = 0;
    points.forEach(function (point) {
      CLASSES.forEach(function (c) { rateMax = Math.max(rateMax, point.requests_per_sec[c] || 0); });
      socketMax = Math.max(socketMax, point.websockets_open || 0);
    });
    var top = niceCeiling(rateMax);
    CLASSES.forEach(function (c) {
      byId("traffic-" + c).setAttribute("d", pathOf(points, end, function (p) { return p.requests_per_sec[c] || 0; }, top));
      var last = points.length ? points[points.length - 1].requests_per_sec[c] : null;
      byId("traffic-now-" + c).textContent = last == null ? "–" : String(last);
    });
    byId("traffic-sockets").setAttribute("d", pathOf(points, end, function (p) { return p.websockets_open || 0; }, niceCeiling(socketMax)));
    byId("traffic-now-sockets").textContent = String(summary.websockets_open);
    byId("traffic-max").textContent = top + " req/s";
    var chart = byId("traffic-chart");
    chartUpdates += 1;
    chart.setAttribute("data-points", String(points.length));
    chart.setAttribute("data-updates", String(chartUpdates));
    byId("traffic-updated").textContent = points.length
      ? "updated " + new Date().toLocaleTimeString()
      : "the first rate appears 2 seconds after the server starts";
  }

  function refreshChart() {
    fetch("/api/metrics", { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (body) {
          if (response.ok && body) {
            drawChart(body);
            scheduleChart(CHART_POLL_MS);
            return;
          }
          // 429: wait as long as the server asks before trying again.
          var retry = Number(response.headers.get("Retry-After")) || CHART_POLL_MS / 1000;
          byId("traffic-updated").textContent = "HTTP " + response.status + "; retrying in " + retry + " s";
          scheduleChart(Math.max(retry * 1000, CHART_POLL_MS));
        });
      })
      .catch(function () {
        byId("traffic-updated").textContent = "the server did not answer; retrying";
        scheduleChart(CHART_POLL_MS * 2);
      });
  }

  // ---- /socket -----------------------------------------------------------------------------

  var socket = null;
  var wantOpen = true;
  var reconnectDelay = 1000;
  var reconnectTimer = null;

  function log(direction, text) {
    var list = byId("socket-log");
    var entry = document.createElement("li");
    entry.setAttribute("data-dir", direction);
    var time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    var arrow = document.createElement("span");
    arrow.className = "dir";
    arrow.textContent = direction === "out" ? "→" : direction === "in" ? "←" : "·";
    var body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    entry.appendChild(time);
    entry.appendChild(arrow);
    entry.appendChild(body);
    list.appendChild(entry);
    while (list.children.length > MAX_LOG_ENTRIES) list.removeChild(list.firstChild);
    list.scrollTop = list.scrollHeight;
  }

  function socketUrl() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/socket";
  }

  function setSocketState(state, label) {
    setPill(byId("socket-state"), state, label);
    var open = state === "open";
    byId("socket-send").disabled = !open;
    byId("socket-input").disabled = !open;
    byId("socket-toggle").textContent = state === "closed" ? "Connect" : "Disconnect";
  }

  function send(text) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    socket.send(text);
    log("out", text);
  }

  function connect() {
    clearTimeout(reconnectTimer);
    wantOpen = true;
    setSocketState("connecting", "connecting");
    log("sys", "connecting to " + socketUrl());
    var current = new WebSocket(socketUrl());
    socket = current;
    current.addEventListener("open", function () {
      reconnectDelay = 1000;
      setSocketState("open", "open");
      log("sys", "connected");
      send(GREETING);
    });
    current.addEventListener("message", function (event) {
      log("in", typeof event.data === "string" ? event.data : "[binary message]");
    });
    current.addEventListener("close", function (event) {
      if (socket !== current) return;
      socket = null;
      setSocketState("closed", "closed");
      log("sys", "closed with code " + event.code + (event.reason ? " (" + event.reason + ")" : ""));
      if (wantOpen) {
        // The server restarting (close 1001) or a network hiccup: come back, gently.
        log("sys", "reconnecting in " + Math.round(reconnectDelay / 1000) + " s");
        reconnectTimer = setTimeout(connect, reconnectDelay);
        reconnectDelay = Math.min(reconnectDelay * 2, 30000);
      }
    });
  }

  function disconnect() {
    wantOpen = false;
    clearTimeout(reconnectTimer);
    if (socket) {
      socket.close(1000, "closed from the status page");
    } else {
      setSocketState("closed", "closed");
    }
  }

  function start() {
    refreshStatus();
    refreshChart();
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") {
        schedulePoll(0);
        scheduleChart(0);
      }
    });

    if (!("WebSocket" in window)) {
      setSocketState("closed", "unsupported");
      log("sys", "this browser has no WebSocket support");
      return;
    }
    byId("socket-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var input = byId("socket-input");
      if (input.value === "") return;
      send(input.value);
      input.value = "";
      input.focus();
    });
    byId("socket-toggle").addEventListener("click", function () {
      if (socket) disconnect(); else connect();
    });
    connect();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
