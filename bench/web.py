"""Web endpoint overhead: a trivial FastAPI endpoint through Shoal's gateway vs the same app under plain uvicorn.

Run:  python bench/web.py [--requests 3000] [--clients 50] [--rounds 5]
Both in one run, on this machine, interleaved round by round: requests/s with 50 concurrent clients, and p50/p99
latency; medians over the rounds of each side, of the per-round ratio and of the per-round added p50 (what the
issue asks for: gateway ≥ 50% of direct uvicorn's requests/s, ≤ 2 ms added p50).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI

import shoal

app = shoal.App("bench-web")


async def ping() -> dict[str, bool]:
    return {"ok": True}


@app.function(min_containers=1)
@shoal.concurrent(max_inputs=100)
@shoal.fastapi_endpoint()
async def endpoint() -> dict[str, bool]:
    return {"ok": True}


async def load(url: str, requests: int, clients: int) -> dict[str, float]:
    """``clients`` keep-alive connections sending GETs back to back (a raw asyncio client: httpx would be the
    bottleneck); returns requests/s and latency percentiles."""
    parts = urlsplit(url)
    head = f"GET {parts.path or '/'} HTTP/1.1\r\nhost: {parts.netloc}\r\n\r\n".encode()
    latencies: list[float] = []
    counter = iter(range(requests))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        for _ in counter:
            started = time.perf_counter()
            writer.write(head)
            status_line = await reader.readuntil(b"\r\n")
            length, chunked = 0, False
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                chunked = chunked or line.lower().startswith(b"transfer-encoding: chunked")
            if chunked:
                while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                    await reader.readexactly(size + 2)
                await reader.readuntil(b"\r\n")
            else:
                await reader.readexactly(length)
            assert status_line.startswith(b"HTTP/1.1 200"), status_line
            latencies.append(time.perf_counter() - started)
        writer.close()

    for _ in range(20):  # warm up: containers started, first connections made
        httpx.get(url).raise_for_status()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    seconds = time.perf_counter() - started
    latencies.sort()
    return {"requests_per_s": round(requests / seconds), "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2)}  # fmt: skip


def measure(url: str, requests: int, clients: int) -> dict[str, float]:
    """The load from a process of its own (this one runs the SDK's threads)."""
    call = f"w.load({url!r}, {requests}, {clients})"
    code = f"import asyncio, json, bench.web as w; print(json.dumps(asyncio.run({call})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout)  # type: ignore[no-any-return]


ROOT = Path(__file__).parent.parent
direct_app = FastAPI()
direct_app.add_api_route("/", ping)


def direct_uvicorn() -> tuple[str, subprocess.Popen[bytes]]:
    """The same app under plain uvicorn, in a process of its own (as the gateway and its container are)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", "bench.web:direct_app", "--port", str(port), "--log-level", "warning",
               "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    while True:
        try:
            httpx.get(url).raise_for_status()
            return url, proc
        except httpx.TransportError:
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000, help="requests per round and side")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each measuring direct then gateway")
    args = parser.parse_args()
    url, proc = direct_uvicorn()
    rounds: list[dict[str, dict[str, float]]] = []
    try:
        with app.run(show_logs=False):
            gateway_url = endpoint.get_web_url()
            assert gateway_url is not None
            for _ in range(args.rounds):  # interleaved, so that a noisy neighbour hits both sides alike
                direct = measure(url, args.requests, args.clients)
                gateway = measure(gateway_url + "/", args.requests, args.clients)
                rounds.append({"direct": direct, "gateway": gateway})
    finally:
        proc.terminate()
        proc.wait()

    def median(side: str, key: str) -> float:
        return round(statistics.median(r[side][key] for r in rounds), 2)

    ratios = [r["gateway"]["requests_per_s"] / r["direct"]["requests_per_s"] for r in rounds]
    added = [r["gateway"]["p50_ms"] - r["direct"]["p50_ms"] for r in rounds]
    summary = {side: {key: median(side, key) for key in ("requests_per_s", "p50_ms", "p99_ms")}
               for side in ("direct", "gateway")}  # fmt: skip
    per_round = [{"ratio": round(q, 2), "added_p50_ms": round(a, 2)} for q, a in zip(ratios, added)]
    print(json.dumps({"direct_uvicorn": summary["direct"], "shoal_gateway": summary["gateway"],
                      "throughput_ratio": round(statistics.median(ratios), 2),
                      "added_p50_ms": round(statistics.median(added), 2), "rounds": per_round}))  # fmt: skip


if __name__ == "__main__":
    main()
