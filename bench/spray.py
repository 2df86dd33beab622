#!/usr/bin/env python3
"""Sprays distinct client addresses at tandem through a trusted X-Forwarded-For (docs/reference.md §6).

Each worker process holds one keep-alive connection to 127.0.0.1 and pipelines batches of
`GET /json` requests, every one from a new client: half IPv4 (11.0.0.0 upwards), half IPv6,
each in its own /64 (2001:db8:<i>::1), so every request creates one rate-limiter key.
While it runs, a thread samples the server's VmRSS; it prints the peak when done.
"""

import argparse
import ipaddress
import multiprocessing
import socket
import sys
import threading
import time

REQUEST = "GET /json HTTP/1.1\r\nHost: bench\r\nX-Forwarded-For: {}\r\n\r\n"


def address(i: int, total: int) -> str:
    half = total // 2
    if i < half:
        return str(ipaddress.IPv4Address(0x0B000000 + i))
    j = i - half
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | (j << 64) | 1))


def worker(port: int, start: int, stop: int, total: int, batch: int, results) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(30)
    ok = limited = other = 0
    for first in range(start, stop, batch):
        last = min(first + batch, stop)
        sock.sendall("".join(REQUEST.format(address(i, total)) for i in range(first, last)).encode())
        want = last - first
        seen = 0
        tail = b""
        while seen < want:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("tandem closed the connection")
            data = tail + chunk
            # Count status lines; keep a few bytes so a line split across reads is not lost.
            pos = 0
            while True:
                at = data.find(b"HTTP/1.1 ", pos)
                if at < 0 or at + 12 > len(data):
                    break
                status = data[at + 9 : at + 12]
                if status == b"200":
                    ok += 1
                elif status == b"429":
                    limited += 1
                else:
                    other += 1
                seen += 1
                pos = at + 12
            tail = data[max(pos, len(data) - 11) :]
    sock.close()
    results.put((ok, limited, other))


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="tandem's pid, for VmRSS")
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()

    peak = [rss_kb(args.pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb(args.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results = multiprocessing.Queue()
    share = -(-args.clients // args.connections)
    procs = []
    started = time.monotonic()
    for n in range(args.connections):
        start, stop = n * share, min((n + 1) * share, args.clients)
        p = multiprocessing.Process(
            target=worker, args=(args.port, start, stop, args.clients, args.batch, results)
        )
        p.start()
        procs.append(p)
    totals = [0, 0, 0]
    for _ in procs:
        for k, v in enumerate(results.get(timeout=600)):
            totals[k] += v
    for p in procs:
        p.join()
    elapsed = time.monotonic() - started
    done.set()
    sampler.join()
    peak[0] = max(peak[0], rss_kb(args.pid))
    print(
        f"spray: {sum(totals)} requests from {args.clients} distinct clients in {elapsed:.1f} s "
        f"({sum(totals) / elapsed:.0f}/s): {totals[0]} x 200, {totals[1]} x 429, {totals[2]} other"
    )
    print(f"peak VmRSS during spray: {peak[0]} kB")
    return 0 if totals[2] == 0 and sum(totals) == args.clients else 1


if __name__ == "__main__":
    sys.exit(main())
