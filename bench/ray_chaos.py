"""Issue 27's chaos target on the Ray backend: a 3-node Ray cluster on 127.0.0.1 (a head and two workers, 1 CPU
each), a Shoal server on it, one 10,000-input map; a worker node is killed mid-map, then the head (its GCS first),
and Ray comes back at the same address. Every result must be present exactly once, from at least two nodes.

    python bench/ray_chaos.py [--inputs 10000] [--work-ms 10] [--worker-at 2000] [--head-at 5000]

The kills come when that many results have arrived (in order): each input sleeps ``--work-ms`` so that most of the
map is still to run when they do.

Prints one JSON line: the counts, the nodes that answered, and the timings. Needs Ray (``pip install ray``) and a
free minute or three.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

TOKEN = "shoal-bench-chaos-token"
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A head whose GCS listens on ``port``, and ``workers`` workers: 1 CPU each."""

    def __init__(self, port: int, workers: int) -> None:
        from ray.cluster_utils import Cluster as RayCluster

        small = {"object_store_memory": 80 * 2**20}
        head = {"num_cpus": 1, "include_dashboard": False, "gcs_server_port": port, **small}
        self.cluster = RayCluster(initialize_head=True, head_node_args=head)
        self.workers = [self.cluster.add_node(num_cpus=1, **small) for _ in range(workers)]
        self.cluster.wait_for_nodes()
        self.address = self.cluster.address

    def kill_worker(self, node_id_prefixes: set[str]) -> str:
        """Kill (without warning) a worker that runs one of these nodes' containers; its node id."""
        victim = next((w for w in self.workers if w.node_id[:8] in node_id_prefixes), self.workers[0])
        self.cluster.remove_node(victim, allow_graceful=False)
        self.workers.remove(victim)
        return str(victim.node_id)

    def kill_head(self) -> None:
        self.cluster.remove_node(self.cluster.head_node, allow_graceful=False)

    def shutdown(self) -> None:
        self.cluster.shutdown()


def start_server(state: Path, address: str) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "SHOAL_TOKEN": TOKEN, "SHOAL_RAY_HEAD_TIMEOUT": "5"}
    proc = subprocess.Popen([sys.executable, "-m", "shoal.server", "--port", "0", "--state-dir", str(state),
                             "--backend", "ray", "--ray-address", address], stdout=subprocess.PIPE,
                            stderr=open(state.parent / "server.log", "ab"), env=env)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("SHOAL_SERVER_URL="):
        raise RuntimeError(f"the server did not start: {line!r} (see {state.parent / 'server.log'})")
    return proc, line.split("=", 1)[1]


def busy_nodes(url: str) -> set[str]:
    import httpx

    reply = httpx.get(f"{url}/containers", headers={"authorization": f"Bearer {TOKEN}"}, timeout=30).json()
    return {c["node"][:8] for c in reply["containers"] if c.get("node")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--work-ms", type=float, default=10.0)
    parser.add_argument("--worker-at", type=int, default=2_000)
    parser.add_argument("--head-at", type=int, default=5_000)
    args = parser.parse_args()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only (read when Ray is imported)
    port = free_port()
    clusters = [Cluster(port, workers=2)]
    state = Path(tempfile.mkdtemp(prefix="shoal-chaos-")) / "state"
    server, url = start_server(state, clusters[0].address)
    os.environ.update(SHOAL_SERVER_URL=url, SHOAL_TOKEN=TOKEN)
    sys.path.insert(0, str(HERE))
    import chaos_fns

    report: dict[str, Any] = {"inputs": args.inputs}
    got: list[tuple[int, str]] = []
    started = time.perf_counter()
    try:
        with chaos_fns.app.run(show_logs=False):
            for x, node in chaos_fns.where.map(range(args.inputs), kwargs={"work_s": args.work_ms / 1000}):
                got.append((x, node))
                if len(got) == args.worker_at:
                    report["worker_killed"] = clusters[0].kill_worker(busy_nodes(url))[:8]
                    report["worker_killed_at_s"] = round(time.perf_counter() - started, 1)
                elif len(got) == args.head_at:
                    clusters[0].kill_head()
                    report["head_killed_at_s"] = round(time.perf_counter() - started, 1)
                    clusters[0].shutdown()  # the rest of the old cluster goes too
                    clusters.append(Cluster(port, workers=2))  # Ray is back at the same address: a new cluster
                    report["ray_back_at_s"] = round(time.perf_counter() - started, 1)
        report["seconds"] = round(time.perf_counter() - started, 1)
    finally:
        server.terminate()
        server.wait(30)
        clusters[-1].shutdown()
    inputs = [x for x, _ in got]
    report["results"] = len(got)
    report["every_result_once"] = sorted(inputs) == list(range(args.inputs))
    report["in_order"] = inputs == list(range(args.inputs))
    report["nodes"] = dict(Counter(node[:8] for _, node in got))
    report["server_alive_until_the_end"] = server.returncode in (0, -15)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
