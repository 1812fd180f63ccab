"""How fast containers start: time to 100 running containers on the Ray backend and locally.

Run:  python bench/ray_actors.py [--containers 100]
A function asking for 0.01 CPU and ``max_containers=N`` gets N inputs that each hold their container; the
clock runs from the spawns to the moment N containers report RUNNING (polled every 50 ms). On the Ray backend,
on a 3-node Ray cluster on 127.0.0.1 (1 CPU each), beside the reference in the same run: plain Ray creating N
detached actors of 0.01 CPU, until each answered a call. Locally, the same app on
the embedded server, twice: containers forked from a fork server (the default), and started as fresh processes
(``SHOAL_FORK_SERVER=off``). Prints one JSON line: seconds to N running, containers/s, and (Ray) seconds until
Ray had placed every container, and Shoal's time over plain Ray's. ``--local-only`` skips Ray, ``--ray-only`` the
local runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from holder import app, hold  # noqa: E402  (bench/ is the script's folder)

TOKEN = "shoal-bench-ray-token"


def time_to_running(count: int, url: str | None = None, headers: dict[str, str] | None = None) -> dict[str, float]:
    with app.run(show_logs=False):
        if url is None:  # the embedded server this run started
            from shoal import _servers

            record = max(_servers.live(), key=lambda r: r.pid)
            url, headers = record.url, {"authorization": f"Bearer {_servers.token_for(record.url)}"}
        started = time.perf_counter()
        calls = [hold.spawn(120.0) for _ in range(count)]
        spawned_at = time.perf_counter() - started
        placed_at = None
        while True:
            rows = httpx.get(f"{url}/containers", headers=headers, timeout=30).json()["containers"]
            mine = [r for r in rows if r["function"] == "hold"]
            if placed_at is None and sum(1 for r in mine if r.get("node")) >= count:
                placed_at = time.perf_counter() - started
            if sum(1 for r in mine if r["state"] == "RUNNING") >= count:
                seconds = time.perf_counter() - started
                break
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"only {len(mine)} containers after 600 s")
            time.sleep(0.05)
        for call in calls:
            call.cancel(terminate_containers=True)
    return {"seconds_to_running": round(seconds, 2), "containers_per_s": round(count / seconds, 1),
            "seconds_to_placed": round(placed_at or seconds, 2),
            "seconds_to_spawned": round(spawned_at, 2)}  # fmt: skip


def plain_ray(count: int, address: str) -> dict[str, float]:
    """The reference: plain Ray creating ``count`` detached actors (0.01 CPU each) on the same cluster, timed until
    every one answered a call; in a child process, a driver of its own."""
    script = f"""
import json, time, ray
ray.init(address={address!r}, namespace="bench-plain", log_to_driver=False)
@ray.remote(num_cpus=0.01)
class Held:
    def ping(self):
        return 1
started = time.perf_counter()
actors = [Held.options(name=f"held-{{i}}", lifetime="detached").remote() for i in range({count})]
ray.get([a.ping.remote() for a in actors])
seconds = time.perf_counter() - started
for a in actors:
    ray.kill(a)
print(json.dumps({{"seconds_to_running": round(seconds, 2), "actors_per_s": round({count} / seconds, 1)}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    [line] = [line for line in done.stdout.splitlines() if line.startswith('{"seconds')]  # Ray prints too
    return dict(json.loads(line))


def on_ray(count: int) -> dict[str, object]:
    """A 3-node Ray cluster on 127.0.0.1 (1 CPU each): plain Ray's actors first, then Shoal's containers."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray.cluster_utils import Cluster

    small = {"num_cpus": 1, "object_store_memory": 80 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={"include_dashboard": False, **small})
    for _ in range(2):
        cluster.add_node(**small)
    cluster.wait_for_nodes()
    state = Path(tempfile.mkdtemp(prefix="shoal-bench-actors-"))
    try:
        plain = plain_ray(count, cluster.address)
        server = subprocess.Popen(
            [sys.executable, "-m", "shoal.server", "--port", "0", "--state-dir", str(state), "--backend", "ray",
             "--ray-address", cluster.address], stdout=subprocess.PIPE, env={**os.environ, "SHOAL_TOKEN": TOKEN},
        )  # fmt: skip
        try:
            assert server.stdout is not None
            url = server.stdout.readline().decode().strip().split("=", 1)[1]
            saved = {k: os.environ.get(k) for k in ("SHOAL_SERVER_URL", "SHOAL_TOKEN")}
            os.environ.update(SHOAL_SERVER_URL=url, SHOAL_TOKEN=TOKEN)
            try:
                shoal_ray = time_to_running(count, url, {"authorization": f"Bearer {TOKEN}"})
            finally:
                for key, value in saved.items():
                    os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        finally:
            server.terminate()
            server.wait(30)
    finally:
        cluster.shutdown()
    ratio = round(shoal_ray["seconds_to_running"] / plain["seconds_to_running"], 2)
    return {"plain_ray_actors": plain, "shoal": shoal_ray, "shoal_over_plain_ray": ratio}


def local(count: int, fork_server: bool) -> dict[str, float]:
    """The local backend on the embedded server, with containers forked from a fork server or started afresh."""
    os.environ["SHOAL_FORK_SERVER"] = "on" if fork_server else "off"
    try:
        return time_to_running(count)
    finally:
        os.environ.pop("SHOAL_FORK_SERVER")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--local-only", action="store_true", help="skip the Ray backend")
    parser.add_argument("--ray-only", action="store_true", help="skip the local backend")
    args = parser.parse_args()
    os.environ["SHOAL_MAX_TOTAL_CONTAINERS"] = str(args.containers + 10)  # the local default caps at 8 x CPUs
    found: dict[str, object] = {"containers": args.containers}
    if not args.local_only:
        found["ray_backend"] = on_ray(args.containers)
    if not args.ray_only:
        found["local_fork_server"] = local(args.containers, fork_server=True)
        found["local_fresh_processes"] = local(args.containers, fork_server=False)
    print(json.dumps(found))


if __name__ == "__main__":
    main()
