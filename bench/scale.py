"""Control-plane scale: many simulated containers against one server holding a large queue.

Run:  python bench/scale.py [--containers 1000] [--inputs 100000] [--functions 4] [--work-ms 50] [--procs 4]
      [--store postgresql://...]

One real control plane (the server's own ASGI app on its own HTTP front, SQLite store) runs in this process with
a backend whose "containers" are simulated: each launch goes to one of ``--procs`` simulator processes, where an asyncio
task speaks the container protocol over real HTTP with its own connection (fetch its spec, report started, then
exchange: report the last batch's outputs and lease the next; heartbeat as the runtime does: not within a second
of an exchange, else a beat the server may hold up to 5 s) and "runs" each input by
sleeping ``--work-ms`` on average (uniformly 0.5x to 1.5x: real inputs do not finish in lockstep). No user code
runs. The queue (``--inputs`` split over ``--functions`` functions, each
allowed an equal share of the containers) is written to the store before the server starts.

It reports: time until every container ran, throughput, the CPU seconds the server's process and the simulators
used (on a machine of N cores, the server gets at most N minus what the simulators take), the round trip of each
exchange that asks for inputs without long-polling (the lease latency: p50, p99, max, as the simulated containers
see it, their own event loops included; and its p99 once every container ran, without the start's herd) and the
time the server spent on each (``server_exchange_*``), heartbeat latency, per-function first and last completion
(starvation shows as a late first completion), and whether every input has exactly one result (outputs per call,
reports the server rejected as stale).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import multiprocessing as mp
import os
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from shoal import _loop
from shoal.backends.base import Backend, Capabilities, ContainerSpec
from shoal.client import CONTAINER, Client
from shoal.container.runtime import HELD_BEAT, IDLE_POLL
from shoal.exception import ConnectionError
from shoal.protocol import chunks, routes
from shoal.protocol.messages import (
    EXIT_UNREACHABLE,
    ContainerBoot,
    ExchangeReply,
    ExchangeRequest,
    HeartbeatReply,
    HeartbeatRequest,
    OutputStatus,
    ReportedOutput,
    StartedReport,
)
from shoal.protocol.specs import FunctionSpec
from shoal.server.boot_window import BOOT_WINDOW
from shoal.server.control import ControlPlane, Parts, ServerConfig
from shoal.server.http_server import HttpServer
from shoal.server.listen import bind
from shoal.server.routes import create_app
from shoal.server.store import open_store

TOKEN = "scale-bench-token"
RESULT = b"\x00" + b"r" * 16  # an inline payload, as a container reports a small return value


class SimBackend(Backend):
    """Sends launches and terminations to the simulator processes; their exits come back via ``exits``."""

    def __init__(self, inboxes: list[Any]) -> None:
        super().__init__()
        self.inboxes = inboxes
        self.running: dict[str, int] = {}
        self.launched = 0

    async def launch(self, spec: ContainerSpec) -> None:
        worker = self.launched % len(self.inboxes)
        self.launched += 1
        self.running[spec.container_id] = worker
        self.inboxes[worker].put(("launch", spec.container_id, spec.container_token))

    async def terminate(self, container_id: str, grace: float) -> None:
        worker = self.running.get(container_id)
        if worker is not None:
            self.inboxes[worker].put(("terminate", container_id, ""))

    def exited(self, container_id: str, code: int) -> None:
        if self.running.pop(container_id, None) is not None:
            self.on_exit(container_id, code)

    def list(self) -> list[str]:
        return list(self.running)

    def has(self, container_id: str) -> bool:
        return container_id in self.running

    async def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(("close", "", ""))

    def capabilities(self) -> Capabilities:
        return Capabilities(cpus=1_000_000.0, memory_mib=1 << 30)


# ---- the simulator processes ----------------------------------------------------------------------


def simulate(url: str, inbox: Any, outbox: Any, work_s: float, want: int) -> None:
    _loop.run(_simulate(url, inbox, outbox, work_s, want))


async def _simulate(url: str, inbox: Any, outbox: Any, work_s: float, want: int) -> None:
    loop = asyncio.get_running_loop()
    tasks: dict[str, asyncio.Task[None]] = {}
    stats: dict[str, list[float]] = {"lease": [], "lease_at": [], "beat": [], "started_at": [], "lag": []}
    counts = {"accepted": 0, "reported": 0, "errors": 0}
    prober = asyncio.create_task(_probe(stats["lag"]))
    _loop.settle_gc()  # 5,000 containers' clients in one process churn as a server does (a real container's
    # process holds one client: its collector is no concern); without it this process's own pauses are timed
    while True:
        kind, cid, token = await loop.run_in_executor(None, inbox.get)
        if kind == "launch":
            tasks[cid] = asyncio.create_task(_container(cid, url, token, work_s, want, stats, counts, outbox))
        elif kind == "terminate" and cid in tasks:
            tasks[cid].cancel()
        elif kind == "close":
            break
    prober.cancel()
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    outbox.put(("stats", json.dumps({"stats": stats, "counts": counts, "cpu_s": time.process_time()})))


async def _probe(lags: list[float]) -> None:
    """How late this simulator's event loop runs a 10 ms timer: what each of its containers' requests waits behind,
    on top of the server's answer."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - t - 0.01)


async def _container(
    cid: str, url: str, token: str, work_s: float, want: int, stats: dict[str, list[float]], counts: dict[str, int],
    outbox: Any,
) -> None:  # fmt: skip
    client = Client(url, token, CONTAINER, timeout=120)
    code = 0
    contact = [time.monotonic()]  # when the last exchange ended (0: one is in flight)
    beat = asyncio.create_task(_heartbeat(client, cid, stats, contact))
    try:
        await client.call("GET", routes.path(routes.CONTAINER_BOOT, container_id=cid), None, ContainerBoot)
        await client.call("POST", routes.path(routes.CONTAINER_STARTED, container_id=cid), StartedReport(), dict)
        stats["started_at"].append(time.time())
        exchange = routes.path(routes.CONTAINER_EXCHANGE, container_id=cid)
        reports: list[ReportedOutput] = []
        while True:
            wait = 0.0
            t = time.perf_counter()
            contact[0] = 0
            reply = await client.call("POST", exchange, ExchangeRequest(reports, want=want, wait=wait), ExchangeReply)
            contact[0] = time.monotonic()
            stats["lease"].append(time.perf_counter() - t)
            stats["lease_at"].append(time.time())
            counts["accepted"] += reply.accepted
            counts["reported"] += len(reports)
            reports = []
            if reply.stop:
                return
            if not reply.inputs:  # nothing queued now: long-poll as long as a real container does (not timed)
                contact[0] = 0
                reply = await client.call("POST", exchange, ExchangeRequest(want=want, wait=IDLE_POLL), ExchangeReply)
                contact[0] = time.monotonic()
                if reply.stop:
                    return
            if reply.inputs:
                n = sum(x.count for x in reply.inputs)
                await asyncio.sleep(work_s * n * random.uniform(0.5, 1.5))  # work, with jitter
                reports = [ReportedOutput(x.call_id, x.index, x.lease, OutputStatus.SUCCESS,  # a chunk: one report
                                          RESULT if x.count == 1 else chunks.pack([RESULT] * x.count),
                                          work_s * x.count, count=x.count)
                           for x in reply.inputs]  # fmt: skip
    except asyncio.CancelledError:
        code = -15
    except Exception as exc:  # noqa: BLE001 - counted: the server refused or dropped us
        counts["errors"] += 1
        if counts["errors"] <= 3:
            print(f"container {cid} failed: {type(exc).__name__}: {exc}", flush=True)
        code = EXIT_UNREACHABLE if isinstance(exc, ConnectionError) else 1  # as the real container runtime does
    finally:
        beat.cancel()
        with contextlib.suppress(BaseException):
            await client.http.close()
        outbox.put(("exit", f"{cid} {code}"))


async def _heartbeat(client: Client, cid: str, stats: dict[str, list[float]], contact: list[float]) -> None:
    """As the container runtime beats: not within a second of an exchange (``contact``: when the last one ended,
    0 while one is in flight), else a beat the server may hold (a third of its heartbeat timeout), released when
    the container's exchange follows it on its connection (one connection per container, as the runtime's)."""
    path = routes.path(routes.CONTAINER_HEARTBEAT, container_id=cid)
    while True:
        if contact[0] == 0 or time.monotonic() - contact[0] < 1.0:
            await asyncio.sleep(1.0)
            continue
        with contextlib.suppress(Exception):
            await client.call("POST", path, HeartbeatRequest(wait=HELD_BEAT), HeartbeatReply, releasable=True)
            stats["beat"].append(time.monotonic())


# ---- the server -----------------------------------------------------------------------------------


def fill(state_dir: Path, functions: int, inputs: int, containers: int, location: str | None) -> list[str]:
    """The queue, written before the server starts: ``functions`` functions sharing ``inputs`` inputs."""
    state_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(location or str(state_dir / "state.db"))
    store.create_app("ap-scale", "scale", "deployed")
    calls = []
    for f in range(functions):
        spec = FunctionSpec(max_containers=max(1, containers // functions))
        store.create_function(f"fu-scale{f}", "ap-scale", f"f{f}", spec, None)
        call_id = f"fc-scale{f}"
        store.create_call(call_id, f"fu-scale{f}", "ap-scale", "map", None)
        share = inputs // functions + (1 if f < inputs % functions else 0)
        for start in range(0, share, 10_000):
            n = min(10_000, share - start)
            store.add_inputs(call_id, start, [b"\x00in"] * n, close=start + n >= share)
        calls.append(call_id)
    store.close()
    return calls


def running(plane: ControlPlane) -> int:
    """Containers RUNNING now: one indexed count (reading every container, 4x a second on the server's own event
    loop, took 15% of it at 10,000 containers, and inflated what this benchmark measures)."""
    row = plane.store.db.execute("SELECT COUNT(*) FROM containers WHERE state='RUNNING'").fetchone()  # type: ignore[attr-defined]
    return int(row[0])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def run(
    containers: int, inputs: int, functions: int, work_ms: float, procs: int, want: int, location: str | None = None,
    hot: bool = True, stalls: bool = False, heartbeat_timeout: float = 60.0, boot_window: int = BOOT_WINDOW,
) -> dict[str, Any]:  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="shoal-scale-"))
    calls = fill(tmp / "server", functions, inputs, containers, location)
    sock = bind("127.0.0.1", 0, backlog=8192)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    ctx = mp.get_context("spawn")
    inboxes = [ctx.Queue() for _ in range(procs)]
    outbox = ctx.Queue()
    workers = [ctx.Process(target=simulate, args=(url, inboxes[i], outbox, work_ms / 1000, want), daemon=True)
               for i in range(procs)]  # fmt: skip
    for w in workers:
        w.start()
    backend = SimBackend(inboxes)
    config = ServerConfig(
        state_dir=tmp / "server", url=url, client_token=TOKEN, heartbeat_timeout=heartbeat_timeout,
        result_retention=3600.0, max_total_containers=containers, max_payload_bytes=64 << 20, client_timeout=3600.0,
        boot_window=boot_window,
    )  # fmt: skip
    plane = ControlPlane(config, backend, Parts.in_dir(tmp / "server", location))
    # seconds from each scheduler tick's start to its end: wall time, including the requests served while the tick
    # yields (its `await asyncio.sleep(0)`s), so more than it holds the loop (loop_lag_* says that)
    ticks: list[float] = []
    original_tick = plane._tick

    async def timed_tick(limits: Any) -> None:
        t = time.perf_counter()
        await original_tick(limits)
        ticks.append(time.perf_counter() - t)

    plane._tick = timed_tick  # type: ignore[method-assign]
    served: list[float] = []  # seconds the server spent on each exchange, from its first byte to its answer
    arrived: list[float] = []  # ... from its head's arrival (a pipelined one waits for the beat before it)
    beats_served: list[float] = []
    slowest: dict[str, float] = {}  # route -> its slowest answer (long polls included)
    asgi = create_app(plane)
    if not hot:  # --no-hot: every request through Starlette's stack, as before routes/hot.py (to compare)
        asgi = asgi.app  # type: ignore[attr-defined]

    async def timed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await asgi(scope, receive, send)
        t = time.perf_counter()
        await asgi(scope, receive, send)
        took = time.perf_counter() - t
        route = scope["path"].rsplit("/", 1)[-1]
        slowest[route] = max(slowest.get(route, 0.0), took)
        if route == "exchange":
            served.append(took)
            arrived.append(time.perf_counter() - scope["extensions"]["shoal.arrived"])
        elif route == "heartbeat":
            beats_served.append(took)

    server = HttpServer(timed, plane)
    results: dict[str, Any] = {"containers": containers, "inputs": inputs, "functions": functions,
                               "work_ms": work_ms, "want": want, "procs": procs, "hot": hot,
                               "heartbeat_timeout": heartbeat_timeout, "boot_window": boot_window}  # fmt: skip
    per_stats: list[dict[str, Any]] = []

    open_connections: list[int] = []  # the containers' connections to the server, sampled 4x a second
    lags: list[float] = []  # how late the server's event loop ran a 10 ms timer: what every request waits behind

    last_probe = [time.perf_counter()]
    stalled: collections.Counter[str] = collections.Counter()  # --stalls: where the event loop was when it stalled
    long_stalls: list[tuple[float, str, str]] = []  # --stalls: (seconds, where at 40 ms, where last seen) of long ones

    gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}  # the collector's pauses, per generation
    gc_cpu: dict[int, list[float]] = {0: [], 1: [], 2: []}  # ... in CPU time (a pause's wall time includes preemption)
    gc_began = [0.0, 0.0]
    gc_collected = {0: 0, 1: 0, 2: 0}
    gc_slow: list[tuple[int, int, float]] = []
    gc_sizes: list[tuple[int, int]] = []
    gc_types: collections.Counter[str] = collections.Counter()

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            if os.environ.get("GC_DIAG") and info["generation"] < 2 and len(gc_sizes) < 400:
                objs = gc.get_objects(info["generation"])
                gc_sizes.append((info["generation"], len(objs)))
                if len(objs) > 100_000 and not gc_types:
                    gc_types.update(type(o).__name__ for o in objs)
                del objs
            gc_began[:] = time.perf_counter(), time.thread_time()
        else:
            gc_pauses[info["generation"]].append(time.perf_counter() - gc_began[0])
            gc_cpu[info["generation"]].append(time.thread_time() - gc_began[1])
            gc_collected[info["generation"]] += info["collected"]
            if time.perf_counter() - gc_began[0] > 0.05:
                gc_slow.append((info["generation"], info["collected"], round(time.perf_counter() - gc_began[0], 3)))

    gc.callbacks.append(on_gc)

    async def probe() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            last_probe[0] = time.perf_counter()
            lags.append(last_probe[0] - t - 0.01)

    def watch_stalls(loop_thread: int) -> None:
        """Whenever the loop has not run the probe for 40 ms, note the loop thread's stack (once per stall), and
        each stall over 200 ms: how long, and where the loop was at 40 ms and at its end."""
        caught, stack, late = 0.0, "", ""
        while True:
            time.sleep(0.005)
            behind = time.perf_counter() - last_probe[0]
            if behind > 0.04 and caught != last_probe[0]:
                caught, stack = last_probe[0], where_is(loop_thread)
                stalled[stack] += 1
            elif behind > 0.04:
                late = where_is(loop_thread)
            elif stack and last_probe[0] - caught > 0.2:
                long_stalls.append((round(last_probe[0] - caught, 3), stack, late))
                stack = ""
            elif stack:
                stack = ""

    def where_is(thread: int) -> str:
        frame = sys._current_frames().get(thread)
        where = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_stack(frame)]
        return " < ".join(reversed([w for w in where if "asyncio" not in w][-6:]))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        serving = asyncio.create_task(server.serve(sock, signals=False, backlog=8192))
        prober = asyncio.create_task(probe())
        if stalls:
            threading.Thread(target=watch_stalls, args=(threading.get_ident(),), daemon=True).start()
        while not server.started:
            await asyncio.sleep(0.01)
        _loop.settle_gc()  # as the real server does once started (server/http_server.py)

        def drain_outbox() -> None:
            """Until every simulator's stats came (each sends them once its containers were ended: seconds at
            thousands), or a minute after the server stopped without them."""
            gave_up_at = None
            while True:
                try:
                    kind, body = outbox.get(timeout=0.5)
                except queue.Empty:
                    if serving.done():
                        gave_up_at = gave_up_at or time.monotonic() + 60
                        if time.monotonic() > gave_up_at:
                            return
                    continue
                if kind == "exit":
                    cid, code = body.split()
                    loop.call_soon_threadsafe(backend.exited, cid, int(code))
                elif kind == "stats":
                    per_stats.append(json.loads(body))
                    if len(per_stats) == procs:
                        return

        reader = threading.Thread(target=drain_outbox, daemon=True)
        reader.start()
        started, cpu_at_start, started_wall = time.perf_counter(), time.process_time(), time.time()
        first_done: dict[str, float] = {}
        last_done: dict[str, float] = {}
        all_running_at = None
        while True:
            await asyncio.sleep(0.25)
            now = time.perf_counter() - started
            open_connections.append(len(server.connections))
            done = 0
            for call_id in calls:
                info = plane.store.call(call_id)
                assert info is not None
                done += info.done
                if info.done and call_id not in first_done:
                    first_done[call_id] = now
                if info.finished_at and call_id not in last_done:
                    last_done[call_id] = now
            if all_running_at is None and running(plane) >= containers:
                all_running_at = now
            if done >= inputs:
                break
            if now > 1800:
                raise TimeoutError(f"only {done} of {inputs} inputs done after 30 minutes")
        elapsed = time.perf_counter() - started
        results.update(
            seconds=round(elapsed, 2), inputs_per_s=round(inputs / elapsed),
            server_cpu_s=round(time.process_time() - cpu_at_start, 1),  # its threads too (checkpoints, the bench's)
            all_containers_running_s=all_running_at, launched=backend.launched,
            all_running_at=started_wall + (all_running_at or 0.0), started_wall=started_wall,
            first_completion_s={c: round(t, 2) for c, t in first_done.items()},
            finished_s={c: round(t, 2) for c, t in last_done.items()},
        )  # fmt: skip
        outputs = {c: len(plane.store.outputs(c, 0, inputs + 1)) for c in calls}
        results["outputs_per_call"] = outputs
        results["succeeded"] = sum(
            1 for c in calls for o in plane.store.outputs(c, 0, inputs + 1) if o.status == OutputStatus.SUCCESS.value
        )
        results["exactly_once"] = results["succeeded"] == sum(outputs.values()) == inputs and all(
            len({o.index for o in plane.store.outputs(c, 0, inputs + 1)}) == n for c, n in outputs.items()
        )
        prober.cancel()
        await plane.quiesce()
        await plane.backend.close()  # ends the containers: the simulators report their stats
        server.stop()
        await serving
        plane.store.close()  # once nothing is served (a request on a closed store is an error in the log)
        await loop.run_in_executor(None, reader.join, 60)

    _loop.run(main())
    for w in workers:
        w.join(30)
    lease = [x for s in per_stats for x in s["stats"]["lease"]]
    results.update(loop_lag_p50_ms=round(statistics.median(lags) * 1000, 2), loop_lag_p99_ms=round(
        percentile(lags, 99) * 1000, 2), loop_lag_max_ms=round(max(lags) * 1000, 1))  # fmt: skip
    results.update(
        scheduler_ticks=len(ticks),
        tick_p50_ms=round(statistics.median(ticks) * 1000, 2),
        tick_p99_ms=round(percentile(ticks, 99) * 1000, 2),
        tick_max_ms=round(max(ticks) * 1000, 1),
    )
    results.update(
        open_connections_max=max(open_connections, default=0),
        open_connections_p50=int(statistics.median(open_connections)) if open_connections else 0,
    )
    results["server_slowest_ms"] = {k: round(v * 1000, 1) for k, v in sorted(slowest.items())}
    results["gc_pauses"] = {f"gen{g}": {"count": len(p), "max_ms": round(max(p, default=0) * 1000, 1),
                                        "total_s": round(sum(p), 2),
                                        "cpu_max_ms": round(max(gc_cpu[g], default=0) * 1000, 1),
                                        "cpu_total_s": round(sum(gc_cpu[g]), 2), "collected": gc_collected[g]}
                            for g, p in gc_pauses.items()}  # fmt: skip
    results["gc_slow"] = gc_slow[:20]
    if gc_sizes:
        results["gc_sizes"] = sorted(gc_sizes, key=lambda x: -x[1])[:10]
        results["gc_types"] = gc_types.most_common(15)
    if stalls:
        results["stalls"] = dict(stalled.most_common(12))
        results["long_stalls"] = sorted(long_stalls, reverse=True)[:15]
    quick = sorted(served)[: len(lease)]  # the long polls (timed by the server only) are the slowest: left out
    quick_beats = [b for b in beats_served if b < 0.5]  # beats answered at once (not held open for an order)
    results.update(server_heartbeat_p99_ms=round(percentile(quick_beats, 99) * 1000, 2) if quick_beats else None,
                   heartbeats_served=len(beats_served))  # fmt: skip
    results.update(server_exchange_p50_ms=round(statistics.median(quick) * 1000, 2) if quick else None,
                   server_exchange_p99_ms=round(percentile(quick, 99) * 1000, 2))  # fmt: skip
    waited = sorted(arrived)[: len(lease)]  # from the head's arrival: a pipelined exchange's wait behind its beat
    results.update(server_exchange_from_arrival_p99_ms=round(percentile(waited, 99) * 1000, 2) if waited else None)
    beat = [x for s in per_stats for x in s["stats"]["beat"]]
    running_at = results.pop("all_running_at")  # leases once every container ran (the start's herd left out)
    sim_lags = [x for s in per_stats for x in s["stats"]["lag"]]
    results.update(sim_loop_lag_p99_ms=round(percentile(sim_lags, 99) * 1000, 2),
                   sim_loop_lag_max_ms=round(max(sim_lags, default=0) * 1000, 1))  # fmt: skip
    started_wall = results.pop("started_wall")
    by_window: dict[int, list[float]] = collections.defaultdict(list)  # lease p99 per 10 s of the run (to stderr)
    for s in per_stats:
        for x, at in zip(s["stats"]["lease"], s["stats"]["lease_at"]):
            by_window[int((at - started_wall) // 10)].append(x)
    for window, xs in sorted(by_window.items()):
        print(
            f"  {window * 10:4d}-{window * 10 + 10}s: {len(xs):6d} leases, p50 {percentile(xs, 50) * 1000:7.1f} ms, "
            f"p99 {percentile(xs, 99) * 1000:7.1f} ms",
            file=sys.stderr,
        )
    steady = [x for s in per_stats for x, at in zip(s["stats"]["lease"], s["stats"]["lease_at"]) if at > running_at]
    results.update(
        exchanges=len(lease), lease_p50_ms=round(statistics.median(lease) * 1000, 2) if lease else None,
        lease_p99_ms=round(percentile(lease, 99) * 1000, 2), lease_max_ms=round(max(lease, default=0) * 1000, 1),
        lease_p99_once_all_ran_ms=round(percentile(steady, 99) * 1000, 2) if steady else None,
        heartbeats=len(beat), heartbeats_per_s=round(len(beat) / max(results["seconds"], 1e-9), 1),
        reports_accepted=sum(s["counts"]["accepted"] for s in per_stats),
        reports_sent=sum(s["counts"]["reported"] for s in per_stats),
        container_errors=sum(s["counts"]["errors"] for s in per_stats),
        simulators_cpu_s=round(sum(s["cpu_s"] for s in per_stats), 1),  # whole lives: the fill's start is small
    )  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--functions", type=int, default=4)
    parser.add_argument("--work-ms", type=float, default=50.0)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--want", type=int, default=1, help="inputs a container leases at once")
    parser.add_argument("--store", default=None, help="postgresql://... (an empty database); default: SQLite")
    parser.add_argument("--no-hot", action="store_true", help="exchanges and beats through Starlette (to compare)")
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=60.0,
        help="the server's (SHOAL_HEARTBEAT_TIMEOUT; a third of it is how long a quiet beat is held)",
    )
    parser.add_argument(
        "--boot-window", type=int, default=BOOT_WINDOW, help="containers booting at once (SHOAL_BOOT_WINDOW)"
    )
    parser.add_argument("--stalls", action="store_true", help="report where the event loop was when it stalled")
    args = parser.parse_args()
    os.environ.setdefault("SHOAL_HOME", tempfile.mkdtemp(prefix="shoal-scale-home-"))
    out = run(args.containers, args.inputs, args.functions, args.work_ms, args.procs, args.want, args.store,
              hot=not args.no_hot, stalls=args.stalls, heartbeat_timeout=args.heartbeat_timeout,
              boot_window=args.boot_window)  # fmt: skip
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
