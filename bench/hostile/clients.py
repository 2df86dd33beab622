#!/usr/bin/env python3
"""Hostile clients against a release tandem on 127.0.0.1 (issue 11, BENCHMARKS.md "Hostile
clients"). Standard library only. Each scenario starts its own tandem (one worker, rate limit
off, a 1 MiB file in a temporary htdocs), attacks it for a bounded time while a normal client
measures, prints its figures and stops the server by PID.

    clients.py TANDEM_BINARY SCENARIO [SECONDS]

Scenarios: slowloris, slow_readers, idle_keepalive, bodies, oversized, slow_head.
The normal client opens a new connection per `GET /json` (as a new visitor does), one request
every 10 ms, and counts every refusal, socket error and non-200.
"""

import asyncio
import os
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
BIG = 1024 * 1024


def tcp_kernel_mib():
    """Memory the kernel holds for every TCP socket of the machine (socket buffers), in MiB:
    not in tandem's RSS, but what a slow reader really costs."""
    with open("/proc/net/sockstat") as sockstat:
        for line in sockstat:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return 0.0


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Server:
    """One tandem process with its own roots; stopped by PID."""

    def __init__(self, binary, env=None):
        self.dir = tempfile.TemporaryDirectory(prefix="tandem-hostile.")
        htdocs = os.path.join(self.dir.name, "htdocs")
        public = os.path.join(self.dir.name, "public")
        os.makedirs(htdocs)
        os.makedirs(public)
        with open(os.path.join(htdocs, "big.bin"), "wb") as out:
            out.write(random.Random(11).randbytes(BIG))
        with socket.socket() as s:
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        full_env = dict(os.environ)
        full_env.update(
            {
                "TANDEM__SERVER__PORT": str(self.port),
                "TANDEM__SERVER__WORKERS": os.environ.get("WORKERS", "1"),
                "TANDEM__STATIC__HTDOCS": htdocs,
                "TANDEM__STATIC__PUBLIC": public,
                "TANDEM__RATE_LIMIT__ENABLED": "false",
                "RUST_LOG": "error",
            }
        )
        full_env.update(env or {})
        self.log = open(os.path.join(self.dir.name, "tandem.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "serve"], env=full_env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as s:
                    s.sendall(b"GET /startupz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("tandem did not start")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self):
        """utime + stime of the tandem process so far."""
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()
        self.dir.cleanup()


async def read_response(reader):
    """Status and body of one HTTP/1.1 response with Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length)
    return status, head, body


class Probe:
    """The normal client: a new connection per `GET /json`, every 10 ms, until stopped."""

    def __init__(self, port):
        self.port = port
        self.latencies = []
        self.refused = 0
        self.errors = 0
        self.non_200 = 0
        self.running = True

    async def one(self):
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, self.port), timeout=5
            )
            writer.write(b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, _, _ = await asyncio.wait_for(read_response(reader), timeout=5)
            writer.close()
        except ConnectionRefusedError:
            self.refused += 1
            return
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            self.errors += 1
            return
        self.latencies.append((time.perf_counter() - started) * 1000)
        if status != 200:
            self.non_200 += 1

    async def run(self):
        while self.running:
            await self.one()
            await asyncio.sleep(0.01)

    def report(self, label):
        n = len(self.latencies)
        if n == 0:
            return f"{label}: no request answered; refused {self.refused}, errors {self.errors}"
        lat = sorted(self.latencies)
        p99 = lat[min(n - 1, int(n * 0.99))]
        return (
            f"{label}: {n} requests, p50 {statistics.median(lat):.2f} ms, p99 {p99:.2f} ms, "
            f"max {lat[-1]:.2f} ms; refused {self.refused}, socket errors {self.errors}, "
            f"non-200 {self.non_200}"
        )


async def measure_probe(port, seconds, label):
    """Runs the normal client in its own process, so the attackers' event loop (and the GIL)
    never delays it: what it measures is tandem's latency, not this script's."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "-", "probe", str(port), str(seconds), label,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    print(out.decode().strip(), flush=True)


async def probe_process(port, seconds, label):
    probe = Probe(port)
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(seconds)
    probe.running = False
    await task
    print(probe.report(label), flush=True)


async def with_probe(server, seconds, attack, label):
    """Baseline probe, then the attack with the probe beside it; RSS sampled throughout."""
    await measure_probe(server.port, 3, "normal client, no attack")
    rss_before = server.rss_kib()
    peak = [rss_before]
    tcp_before = tcp_kernel_mib()
    tcp_peak = [tcp_before]
    stop = asyncio.Event()

    async def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], server.rss_kib())
            tcp_peak[0] = max(tcp_peak[0], tcp_kernel_mib())
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
    attacking = asyncio.create_task(attack(stop))
    await asyncio.sleep(min(3, seconds / 4))  # let the attack ramp up first
    await measure_probe(server.port, seconds, f"normal client, during {label}")
    stop.set()
    cpu = server.cpu_seconds() - cpu_before
    wall = time.monotonic() - wall_before
    summary = await attacking
    await sampler
    print(f"tandem CPU during the attack: {cpu:.1f} s in {wall:.1f} s", flush=True)
    print(
        f"tandem VmRSS: {rss_before / 1024:.1f} MiB before, {peak[0] / 1024:.1f} MiB peak, "
        f"{server.rss_kib() / 1024:.1f} MiB after; kernel TCP buffers (whole machine): "
        f"{tcp_before:.1f} MiB before, {tcp_peak[0]:.1f} MiB peak",
        flush=True,
    )
    return summary


# --- slowloris -------------------------------------------------------------------------------


async def slowloris(server, seconds, connections=1000):
    opened = closed = answered_408 = 0
    lifetimes = []

    async def one_connection(stop):
        nonlocal opened, closed, answered_408
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(HOST, server.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            opened += 1
            started = time.monotonic()
            writer.write(b"GET /json HTTP/1.1\r\nHost: x\r\n")
            # Valid header lines, one byte at a time, about one a second: the head never ends,
            # but it is never malformed either (that would be answered 400 at once).
            trickle = iter(b"X-Trickle-%d: 1\r\n" % i for i in range(10**6))
            pending = b""
            try:
                while not stop.is_set():
                    if not pending:
                        pending = next(trickle)
                    writer.write(pending[:1])
                    pending = pending[1:]
                    await writer.drain()
                    try:
                        data = await asyncio.wait_for(reader.read(256), random.uniform(0.5, 1.5))
                    except asyncio.TimeoutError:
                        continue
                    closed += 1
                    lifetimes.append(time.monotonic() - started)
                    if data.startswith(b"HTTP/1.1 408"):
                        answered_408 += 1
                    break
            except OSError:
                closed += 1
                lifetimes.append(time.monotonic() - started)
            writer.close()

    async def attack(stop):
        tasks = [asyncio.create_task(one_connection(stop)) for _ in range(connections)]
        await asyncio.gather(*tasks)

    print(f"slowloris: {connections} connections trickling header bytes for {seconds} s")
    await with_probe(server, seconds, attack, "slowloris")
    life = sorted(lifetimes)
    print(
        f"slowloris connections: {opened} opened, {closed} closed by tandem "
        f"({answered_408} with 408); time to close: median "
        f"{statistics.median(life) if life else float('nan'):.2f} s, "
        f"max {life[-1] if life else float('nan'):.2f} s "
        "(server.client_request_timeout_ms = 5000)"
    )


# --- slow readers ----------------------------------------------------------------------------


async def slow_readers(server, seconds, clients=1000):
    bytes_read = [0]
    connected = [0]

    async def one_reader(stop):
        sock = socket.socket()
        # A small receive window, so the server's writes back up instead of sitting in our buffer.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (HOST, server.port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=16)
        except OSError:
            sock.close()
            return
        connected[0] += 1
        writer.write(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            while not stop.is_set():
                data = await reader.read(1)
                if not data:
                    break
                bytes_read[0] += 1
                await asyncio.sleep(1)
        except OSError:
            pass
        writer.close()

    async def attack(stop):
        tasks = [asyncio.create_task(one_reader(stop)) for _ in range(clients)]
        await asyncio.gather(*tasks)

    async def full_download():
        # curl in its own process: this script's event loop is busy with the slow readers.
        curl = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}",
            f"http://{HOST}:{server.port}/big.bin", stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await curl.communicate()
        status, size, seconds = out.decode().split()
        return status, size, float(seconds) * 1000

    print(f"slow readers: {clients} clients reading a 1 MiB file one byte a second for {seconds} s")

    async def attack_and_download(stop):
        attacking = asyncio.create_task(attack(stop))
        await asyncio.sleep(2)
        status, size, ms = await full_download()
        print(f"a normal 1 MiB download during the attack: {status}, {size} bytes in {ms:.1f} ms")
        await attacking

    await with_probe(server, seconds, attack_and_download, "slow readers")
    print(f"slow readers: {connected[0]} connected, {bytes_read[0]} bytes read in all")


# --- idle keep-alive -------------------------------------------------------------------------


async def open_idle(port, count):
    """`count` keep-alive connections that each made one request and then say nothing."""
    idle = []
    for start in range(0, count, 500):
        batch = await asyncio.gather(
            *(asyncio.open_connection(HOST, port) for _ in range(start, min(count, start + 500))),
            return_exceptions=True,
        )
        for conn in batch:
            if isinstance(conn, Exception):
                continue
            reader, writer = conn
            writer.write(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            idle.append((reader, writer))
    answered = 0
    for reader, _ in idle:
        try:
            status, _, _ = await asyncio.wait_for(read_response(reader), 10)
            answered += status == 200
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
    return idle, answered


async def idle_keepalive(binary, seconds, connections=10_000):
    server = Server(binary)
    try:
        print(f"idle keep-alive: {connections} connections, one request each, then silence")
        await measure_probe(server.port, 3, "normal client, no idle connections")
        rss_before = server.rss_kib()
        started = time.monotonic()
        idle, answered = await open_idle(server.port, connections)
        print(
            f"{len(idle)} connections opened and {answered} answered in "
            f"{time.monotonic() - started:.1f} s; now idle"
        )
        await measure_probe(server.port, seconds, f"normal client, beside {len(idle)} idle")
        print(
            f"tandem VmRSS: {rss_before / 1024:.1f} MiB before, "
            f"{server.rss_kib() / 1024:.1f} MiB with {len(idle)} idle connections"
        )
        for _, writer in idle:
            writer.close()
    finally:
        server.stop()
    # At the cap: server.max_connections is per worker; the worker stops accepting, so a new
    # client's connection completes in the kernel's backlog and waits, unanswered.
    cap = 100
    server = Server(binary, {"TANDEM__SERVER__MAX_CONNECTIONS": str(cap)})
    try:
        idle, answered = await open_idle(server.port, cap)
        probe = Probe(server.port)
        started = time.perf_counter()
        await probe.one()
        waited = (time.perf_counter() - started) * 1000
        outcome = (
            f"answered after {waited:.0f} ms"
            if probe.latencies
            else f"not answered within 5 s (refused {probe.refused}, timed out {probe.errors})"
        )
        print(f"at the cap (server.max_connections = {cap}, 1 worker, {answered} idle): a new client is {outcome}")
        idle[0][1].close()
        probe = Probe(server.port)
        await probe.one()
        print(
            "after one idle connection closes: the new client is "
            + (f"answered in {probe.latencies[0]:.1f} ms" if probe.latencies else "still not answered")
        )
        for _, writer in idle:
            writer.close()
    finally:
        server.stop()


# --- bodies ----------------------------------------------------------------------------------


async def upload(port, path, chunked, size=100_000_000):
    """Sends a `size`-byte body until the answer arrives: (status, bytes sent, ms)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(HOST, port)
    framing = (
        b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % size
    )
    writer.write(
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s\r\n"
        % (path.encode(), framing)
    )
    chunk = b"[" + b"1," * 32767 + b"1"  # 64 KiB of a JSON array that never ends
    answer = asyncio.create_task(read_response(reader))
    sent = 0
    try:
        while sent < size and not answer.done():
            piece = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
            writer.write(piece)
            await writer.drain()
            sent += len(chunk)
    except OSError:
        pass
    try:
        status, _, _ = await asyncio.wait_for(answer, 10)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        status = 0
    writer.close()
    return status, sent, (time.perf_counter() - started) * 1000


def keeps_sending(port, path, chunked, limit=10.0):
    """A client that goes on sending its body after the answer: seconds until tandem closed the
    connection (None: still open after `limit`) and MiB it had taken by then."""
    with socket.create_connection((HOST, port)) as s:
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: 10000000000"
        s.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s\r\n\r\n"
            % (path.encode(), framing)
        )
        piece = b"[" + b"1," * 32767 + b"1"
        data = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
        s.settimeout(1)
        sent, started = 0, time.monotonic()
        while time.monotonic() - started < limit:
            try:
                s.sendall(data)
            except OSError:
                return time.monotonic() - started, sent / 2**20
            sent += len(piece)
        return None, sent / 2**20


async def bodies(server, seconds, parallel=20):
    results = {}

    async def flooder(stop, path, chunked):
        while not stop.is_set():
            status, sent, ms = await upload(server.port, path, chunked)
            results.setdefault((path, chunked), []).append((status, sent, ms))

    async def attack(stop):
        kinds = [(p, c) for p in ("/api/echo", "/api/status") for c in (False, True)]
        await asyncio.gather(
            *(flooder(stop, *kinds[i % len(kinds)]) for i in range(parallel))
        )

    print(f"bodies: {parallel} clients uploading 100 MB bodies in a loop for {seconds} s")
    await with_probe(server, seconds, attack, "the upload flood")
    for path in ("/api/echo", "/api/status"):
        for chunked in (False, True):
            closed, taken = keeps_sending(server.port, path, chunked)
            framing = "chunked" if chunked else "Content-Length: 10000000000"
            fate = f"closed after {closed:.1f} s" if closed else "still open after 10 s"
            print(
                f"POST {path} ({framing}), the client sending on after the answer: {fate}, "
                f"{taken:.0f} MiB taken (read and discarded) by then"
            )
    for (path, chunked), runs in sorted(results.items()):
        statuses = sorted({r[0] for r in runs})
        sent = statistics.median(r[1] for r in runs)
        most = max(r[1] for r in runs)
        ms = statistics.median(r[2] for r in runs)
        framing = "chunked" if chunked else "Content-Length: 100000000"
        print(
            f"POST {path} ({framing}): {len(runs)} uploads, statuses {statuses}; written before "
            f"the answer arrived (socket buffers included): median {sent / 1024:.0f} KiB, "
            f"max {most / 1024:.0f} KiB; median {ms:.1f} ms to the answer"
        )


# --- oversized heads and slow heads ----------------------------------------------------------


def exchange(port, request, timeout=10):
    """Sends `request` and reads to EOF: (status line, content-type, body, closed, seconds)."""
    started = time.monotonic()
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        try:
            s.sendall(request)
        except OSError:
            pass
        data = b""
        closed = False
        try:
            while True:
                more = s.recv(65536)
                if not more:
                    closed = True
                    break
                data += more
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    ctype = next(
        (l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("content-type:")), "-"
    )
    return lines[0], ctype, body, closed, time.monotonic() - started


def oversized(binary):
    server = Server(binary)
    try:
        cases = [
            ("request target 8 KiB + 1", b"/" + b"a" * 8192, b""),
            ("request target 70,000 B", b"/" + b"a" * 70_000, b""),
            ("request target 140,000 B", b"/" + b"a" * 140_000, b""),
            ("one 33 KiB header", b"/json", b"X-Big: " + b"a" * 33 * 1024 + b"\r\n"),
            ("one 140,000 B header", b"/json", b"X-Big: " + b"a" * 140_000 + b"\r\n"),
            ("100 header fields", b"/json", b"".join(b"X-H%d: v\r\n" % i for i in range(100))),
        ]
        for label, target, headers in cases:
            # No `Connection: close`: whether the connection closes is tandem's decision.
            request = b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (target, headers)
            status, ctype, body, closed, _ = exchange(server.port, request, timeout=3)
            print(
                f"{label}: {status}, Content-Type {ctype}, {len(body)}-byte body, "
                f"connection {'closed' if closed else 'left open'}"
            )
    finally:
        server.stop()


def slow_head(binary):
    # keep_alive_secs 5: the watchdog's bound for a later head (keep_alive_secs +
    # client_request_timeout_ms = 7 s) then shows within the 12 s of trickling below.
    server = Server(
        binary,
        {
            "TANDEM__SERVER__CLIENT_REQUEST_TIMEOUT_MS": "2000",
            "TANDEM__SERVER__KEEP_ALIVE_SECS": "5",
        },
    )
    try:
        status, ctype, body, closed, took = exchange(
            server.port, b"GET /json HTTP/1.1\r\nHost: x\r\nX-Request-Id: slow-1\r\n"
        )
        print(
            f"first request's head never finished: {status} after {took:.1f} s, Content-Type "
            f"{ctype}, {len(body)}-byte body, connection {'closed' if closed else 'left open'} "
            "(server.client_request_timeout_ms = 2000)"
        )
        # The second request on a keep-alive connection: actix-http's head timer covers only
        # the first, and any byte clears its keep-alive timer; tandem's connection watchdog
        # closes it once no head has completed for 7 s after the first answer.
        with socket.create_connection((HOST, server.port), timeout=10) as s:
            s.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(65536)
            s.settimeout(1)
            started = time.monotonic()
            fate = "still open"
            for byte in b"GET /json HTTP/1.1\r\nX-Trickle: " + b"a" * 100:
                if time.monotonic() - started > 12:
                    break
                try:
                    s.sendall(bytes([byte]))
                    if not s.recv(256):
                        fate = f"closed after {time.monotonic() - started:.1f} s"
                        break
                except socket.timeout:
                    continue
                except OSError:
                    fate = f"reset after {time.monotonic() - started:.1f} s"
                    break
        print(
            f"second request's head trickled on a kept-alive connection for 12 s: {fate} "
            "(server.keep_alive_secs = 5, so the watchdog's bound is 7 s)"
        )
    finally:
        server.stop()


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    binary, scenario = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 and scenario != "probe" else 20
    limit = raise_fd_limit()
    if scenario == "probe":
        port, secs, label = sys.argv[3], sys.argv[4], sys.argv[5]
        return asyncio.run(probe_process(int(port), float(secs), label))
    workers = os.environ.get("WORKERS", "1")
    print(f"== {scenario} ({binary}, open-file limit {limit}, {workers} worker)", flush=True)
    if scenario == "oversized":
        return oversized(binary)
    if scenario == "slow_head":
        return slow_head(binary)
    if scenario == "idle_keepalive":
        return asyncio.run(idle_keepalive(binary, seconds))
    attacks = {"slowloris": slowloris, "slow_readers": slow_readers, "bodies": bodies}
    if scenario not in attacks:
        raise SystemExit(f"unknown scenario {scenario!r}\n{__doc__}")
    server = Server(binary)
    try:
        asyncio.run(attacks[scenario](server, seconds))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
