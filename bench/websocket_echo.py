#!/usr/bin/env python3
"""Echo throughput of tandem's /socket (docs/reference.md §7): N concurrent sockets, each sending a message and
waiting for its echo before the next, for a fixed time. Prints messages/s and round-trip
percentiles per message size. 127.0.0.1 only; bounded by --seconds.

    python3 -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install -r bench/requirements.txt
    /tmp/bench-venv/bin/python bench/websocket_echo.py --url ws://127.0.0.1:8080/socket

Start tandem as a release build with rate limiting off (the load is 100 upgrades at once), e.g.
TANDEM__RATE_LIMIT__ENABLED=false TANDEM__STATIC__MODE=nginx target/release/tandem serve
"""

import argparse
import asyncio
import os
import time
from urllib.parse import urlparse

import websockets


async def client(url, payload, stop_at, rtts, ready, go):
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        ready.release()
        await go.wait()
        while time.perf_counter() < stop_at[0]:
            sent = time.perf_counter()
            await ws.send(payload)
            echo = await ws.recv()
            rtts.append(time.perf_counter() - sent)
            if len(echo) != len(payload):
                raise RuntimeError("echo differs from what was sent")


def percentile(sorted_values, p):
    index = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run(url, size, sockets, seconds, binary):
    payload = os.urandom(size) if binary else "x" * size
    rtts = []
    ready = asyncio.Semaphore(0)
    go = asyncio.Event()
    stop_at = [float("inf")]
    tasks = [
        asyncio.create_task(client(url, payload, stop_at, rtts, ready, go)) for _ in range(sockets)
    ]
    for _ in range(sockets):
        await ready.acquire()
    started = time.perf_counter()
    stop_at[0] = started + seconds
    go.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    rtts.sort()
    print(
        "%6d B %s x %d sockets, %.0f s: %8.0f messages/s, round trip p50 %.2f ms, p99 %.2f ms, max %.2f ms"
        % (
            size,
            "binary" if binary else "text",
            sockets,
            elapsed,
            len(rtts) / elapsed,
            percentile(rtts, 50) * 1e3,
            percentile(rtts, 99) * 1e3,
            rtts[-1] * 1e3,
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080/socket")
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--sizes", default="64,16384", help="message sizes in bytes, comma-separated")
    parser.add_argument("--binary", action="store_true", help="binary messages instead of text")
    args = parser.parse_args()
    host = urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("benchmarks target this machine only (127.0.0.1)")
    if not 0 < args.seconds <= 120:
        parser.error("--seconds must be between 0 and 120")
    for size in (int(s) for s in args.sizes.split(",")):
        asyncio.run(run(args.url, size, args.sockets, args.seconds, args.binary))


if __name__ == "__main__":
    main()
