"""Benchmark: feed latency (full and 304) and daemon memory, against a running `run`.

    python bench/daemon.py [--feed-actions 5000] [--rss-actions 100000] [--requests 30]

Starts `dhr-workflow run` as a subprocess on a fresh SQLite store (file transport, loopback
HTTP), then: the median time to first byte and total time of GET /feeds/TOKEN.ics for a feed
of N actions, the median of the conditional GET answered 304, and the daemon's resident memory
after its catch-up tick over the larger store: VmRSS two seconds after it answers /healthz
(the tick is done by then) and VmHWM, the peak during start-up and the tick. The same for a
daemon on an empty store gives the baseline (interpreter and imported libraries).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.tick import populate  # noqa: E402
from dhr_workflow import db, feeds  # noqa: E402
from tests.smtp_server import free_port  # noqa: E402


def start(url: str, cwd: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DHR_")}
    env.update(
        {
            "DHR_DATABASE_URL": url,
            "DHR_HTTP_PORT": str(port),
            "DHR_MAIL_DIR": str(cwd),
            "DHR_LOG_LEVEL": "WARNING",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "dhr_workflow", "run"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("daemon did not become healthy")


def store_with(n: int, tmp: str) -> tuple[str, str]:
    url = f"sqlite:///{tmp}/bench-{n}.db"
    db.migrate(url)
    store = db.Store(url)
    populate(store, n)
    with store.transaction() as s:
        secret = feeds.create(
            s, "all", None, "bench", now=dt.datetime.now(dt.UTC), actor="bench"
        ).secret
    store.dispose()
    return url, secret


def feed_latency(port: int, secret: str, requests: int) -> tuple[float, float, float, int, float]:
    path = f"http://127.0.0.1:{port}/feeds/{secret}.ics"
    ttfb, total, not_modified = [], [], []
    size, etag = 0, ""
    with httpx.Client(timeout=60) as client:
        for _ in range(requests):
            start = time.perf_counter()
            with client.stream("GET", path) as r:
                chunks = r.iter_raw()
                first = next(chunks, b"")
                ttfb.append(time.perf_counter() - start)
                size = len(first) + sum(len(chunk) for chunk in chunks)
                etag = r.headers["etag"]
            total.append(time.perf_counter() - start)
        for _ in range(requests):
            start = time.perf_counter()
            r = client.get(path, headers={"If-None-Match": etag})
            assert r.status_code == 304
            not_modified.append(time.perf_counter() - start)
    return (
        statistics.median(ttfb),
        statistics.median(total),
        statistics.median(not_modified),
        size,
        total[0],
    )


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_after_start(url: str, cwd: Path) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB of a daemon two seconds after its catch-up tick."""
    proc, _ = start(url, cwd)
    try:
        time.sleep(2)
        return rss_mb(proc.pid), rss_mb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--feed-actions", type=int, default=5000)
    parser.add_argument("--rss-actions", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url, secret = store_with(args.feed_actions, tmp)
        proc, port = start(url, Path(tmp))
        try:
            ttfb, total, nm, size, cold = feed_latency(port, secret, args.requests)
        finally:
            proc.terminate()
            proc.wait(30)
        base_rss, base_peak = memory_after_start(store_with(0, tmp)[0], Path(tmp))
        rss, peak = memory_after_start(store_with(args.rss_actions, tmp)[0], Path(tmp))
    print(
        f"feed of {args.feed_actions:,} actions (about {size // 1024} KB), "
        f"medians of {args.requests} requests:"
    )
    print(f"  time to first byte: {ttfb * 1000:8.1f} ms   whole feed: {total * 1000:8.1f} ms")
    print(f"  304 Not Modified:   {nm * 1000:8.1f} ms")
    print(f"  first request (rendered, not yet cached): {cold * 1000:.0f} ms")
    print(
        f"daemon RSS after start-up and catch-up tick over {args.rss_actions:,} actions: "
        f"{rss:.0f} MB (peak {peak:.0f} MB)"
    )
    print(f"  baseline, same daemon on an empty store: {base_rss:.0f} MB (peak {base_peak:.0f} MB)")


if __name__ == "__main__":
    main()
