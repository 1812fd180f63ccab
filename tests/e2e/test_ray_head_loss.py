"""Losing the Ray cluster's head mid-map, on a two-node Ray cluster of this test's own on 127.0.0.1: the Shoal
server lives on, says "cluster unreachable" (server status, dashboard, the app's log), keeps the inputs queued, and
resumes when a cluster answers at the same address again; every input ends in exactly one result."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps import backends as b
from tests.conftest import RAY_TOKEN, REPO, ServerProcess

pytestmark = pytest.mark.ray


class SmallCluster:
    """A 1-CPU head whose GCS listens on ``port``, and a 1-CPU worker."""

    def __init__(self, port: int) -> None:
        from ray.cluster_utils import Cluster

        small = {"object_store_memory": 80 * 2**20}
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                                       "gcs_server_port": port, **small})  # fmt: skip
        self.cluster.add_node(num_cpus=1, **small)
        self.cluster.wait_for_nodes()
        self.address = self.cluster.address

    def lose_head(self) -> None:
        """Kill the head's processes (its GCS first among them) without warning."""
        self.cluster.remove_node(self.cluster.head_node, allow_graceful=False)

    def shutdown(self) -> None:
        self.cluster.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return found


@pytest.fixture
def head_loss(
    ray_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[SmallCluster], ServerProcess]]:
    """A server on a small cluster of its own (``ray_cluster`` only says Ray is there: it fails in CI otherwise);
    the test may put a new cluster in the list, and the last one is shut down."""
    clusters = [SmallCluster(_free_port())]
    server = ServerProcess(tmp_path / "state", env={"SHOAL_TOKEN": RAY_TOKEN, "SHOAL_RAY_HEAD_TIMEOUT": "5"},
                           args=("--backend", "ray", "--ray-address", clusters[0].address))  # fmt: skip
    monkeypatch.setenv("SHOAL_SERVER_URL", server.url)  # the SDK points at it for the test
    monkeypatch.setenv("SHOAL_TOKEN", RAY_TOKEN)
    try:
        yield clusters, server
    finally:
        server.stop()
        clusters[-1].shutdown()


def test_losing_the_head_mid_map_keeps_the_server_and_runs_every_input_once_when_ray_is_back(head_loss):
    clusters, server = head_loss
    lost = clusters[0]
    port = int(lost.address.rsplit(":", 1)[1])

    def trouble() -> str | None:
        return httpx.get(f"{server.url}/server", headers=server.auth, timeout=30).json()["trouble"]  # type: ignore[no-any-return]

    got: list[tuple[int, str, int]] = []
    with b.app.run(show_logs=False):
        for item in b.where.map(range(2000)):
            got.append(item)
            if len(got) == 400:
                lost.lose_head()
                said = _wait_for(trouble, 90)  # the server lives, and says so
                assert "unreachable" in said and lost.address in said
                with httpx.Client(follow_redirects=True, timeout=30) as browser:
                    page = browser.get(f"{server.url}/dashboard/containers?token={server.token}")
                assert "Containers cannot start" in page.text and "unreachable" in page.text
                lost.shutdown()  # the rest of the old cluster goes too
                clusters.append(SmallCluster(port))  # Ray is back at the same address: a new cluster
    assert sorted(x for x, _, _ in got) == list(range(2000))  # none lost, none twice
    assert [x for x, _, _ in got] == list(range(2000))  # and in order
    # containers on the surviving worker can finish the map before the server's bridge to the new cluster is up:
    # the server says the cluster is back once it is
    assert server.proc.poll() is None and _wait_for(lambda: trouble() is None, 90)
    log = subprocess.run([sys.executable, "-m", "shoal", "app", "logs", "tests-backends"], capture_output=True,
                         text=True, cwd=REPO, env=os.environ, timeout=60).stdout  # fmt: skip
    assert "The Ray cluster at" in log and "is unreachable" in log and "reachable again" in log
