"""The Ray backend on a three-node Ray cluster on 127.0.0.1 (a 1-CPU head, a 1-CPU worker, a 1-CPU worker with
a T4): maps spread over nodes, a node lost mid-map, GPU placement and waiting for capacity, refusals at deploy,
actors of a previous control plane, and Ray kept on loopback."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import httpx
import psutil
import pytest

import shoal
from tests.apps import backends as b
from tests.conftest import RAY_TOKEN, REPO, shared_dir, wait_for

pytestmark = pytest.mark.ray


@pytest.fixture
def on_ray(ray_server, request):  # noqa: ANN001, ANN201
    """The SDK pointed at the Ray backend's server for one test."""
    saved = {k: os.environ.get(k) for k in ("SHOAL_SERVER_URL", "SHOAL_TOKEN")}
    os.environ.update(SHOAL_SERVER_URL=ray_server.url, SHOAL_TOKEN=RAY_TOKEN)
    yield ray_server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _containers(server: Any) -> list[dict[str, Any]]:
    return httpx.get(f"{server.url}/containers", headers=server.auth, timeout=30).json()["containers"]


def test_a_10000_input_map_runs_on_several_nodes_and_a_node_lost_mid_map_loses_and_repeats_nothing(on_ray, ray_cluster):
    with b.app.run(show_logs=False):
        results = list(b.where.map(range(10_000)))
        assert [x for x, _, _ in results] == list(range(10_000))
        assert len({node for _, node, _ in results}) >= 2, Counter(node for _, node, _ in results)

        # Now lose a worker node while a map runs on it: every input ends in exactly one result.
        got: list[tuple[int, str, int]] = []
        for item in b.where.map(range(3000)):
            got.append(item)
            if len(got) == 300:
                busy = {c["node"][:8] for c in _containers(on_ray) if c["function"] == "where" and c["node"]}
                victim = next(n for n in ray_cluster.workers() if n.node_id[:8] in busy)
                ray_cluster.replace(victim)  # killed at once; a fresh node of the same kind joins
        assert sorted(x for x, _, _ in got) == list(range(3000))  # none lost, none twice
        assert [x for x, _, _ in got] == list(range(3000))  # and in order


def test_a_t4_function_runs_only_on_the_t4_node_and_waits_visibly_while_the_gpu_is_taken(on_ray, ray_cluster):
    gpu_node = ray_cluster.gpu_node.node_id[:8]
    with b.gpu_app.run(show_logs=False):
        first = b.on_gpu.spawn(4.0)  # holds the only GPU for a while
        waiting = b.on_gpu.spawn(0.0)  # needs a second container: Ray cannot place it until the first is done
        # (an earlier test's containers may still be on their way out: only this function's are looked at)
        wait_for(lambda: [c for c in _containers(on_ray) if c["function"] == "on_gpu" and c["waiting_for_capacity_s"]
                          is not None])  # fmt: skip
        listing = subprocess.run([sys.executable, "-m", "shoal", "container", "list"], capture_output=True,
                                 text=True, cwd=REPO, env=os.environ, timeout=60)  # fmt: skip
        assert "waiting for the Ray cluster's capacity" in listing.stdout, listing.stdout + listing.stderr
        node, devices = first.get(timeout=60)
        assert node.startswith(gpu_node) and devices == "0"
        node, _ = waiting.get(timeout=60)
        assert node.startswith(gpu_node)


def test_an_unplaced_container_waits_visibly_and_when_no_longer_wanted_stops_without_being_lost(on_ray):
    with b.waiting_app.run(show_logs=False):
        call = b.too_big.spawn()
        rows = wait_for(lambda: [c for c in _containers(on_ray) if c["function"] == "too_big"])
        assert rows[0]["waiting_for_capacity_s"] is not None and rows[0]["state"] == "STARTING"
        # it keeps waiting: nothing times it out, nothing reports it lost and starts another
        again = wait_for(lambda: [c for c in _containers(on_ray) if c["function"] == "too_big"
                                   and (c["waiting_for_capacity_s"] or 0) > 2.0])  # fmt: skip
        assert [c["container_id"] for c in again] == [rows[0]["container_id"]], again
        call.cancel()  # no longer wanted: the scheduler drains it
        wait_for(lambda: not [c for c in _containers(on_ray) if c["function"] == "too_big"])
        log = "\n".join(_app_log("tests-backends-waiting"))
    assert "stopped" in log and "lost" not in log and "started for" not in log, log  # never ran, never lost


def test_endpoints_are_served_from_containers_on_other_nodes_whose_ports_answer_only_the_gateway(on_ray, ray_cluster):
    gpu_node = ray_cluster.gpu_node.node_id[:8]
    with b.gpu_app.run(show_logs=False):
        url = b.gpu_hello.get_web_url()
        assert url
        answer = httpx.get(url, timeout=120).json()  # through the gateway, to the T4 node's container
        assert answer["node"].startswith(gpu_node) and answer["host"], answer
        [row] = [c for c in _containers(on_ray) if c["function"] == "gpu_hello"]
        assert row["web_address"] == f"{answer['host']}:{row['web_address'].rsplit(':', 1)[1]}"
        # the container's own port, asked directly (as anyone on the node's network could): refused
        direct = httpx.get(f"http://{row['web_address']}/", timeout=30)
        assert direct.status_code == 403 and "gateway" in direct.text
    with b.app.run(show_logs=False):  # a container forked by its node's agent serves the same way
        url = b.hello_node.get_web_url()
        assert url
        answer = httpx.get(url, timeout=120).json()
        assert answer["node"] and answer["host"], answer


def test_a_volume_is_a_copy_as_of_start_or_reload_and_commit_publishes_it(on_ray, sandbox):
    markers = shared_dir()
    name = f"synced-{time.time_ns()}.txt"
    with b.mounting_app.run(show_logs=False):
        assert b.write_uncommitted.remote("uncommitted-" + name)  # written in the container's copy only
        assert "uncommitted-" + name not in [e.path for e in b.volume.listdir("/")]
        probe = b.probe_reload.spawn(name, markers)
        wait_for(lambda: os.path.exists(os.path.join(markers, "ready")))
        assert name in b.write_file.remote(name, "first")  # another container writes and commits it
        open(os.path.join(markers, "committed"), "w").close()
        assert probe.get(timeout=60) == (False, False, True)  # unseen until reload(), then seen
        b.write_file.remote(name, "second")  # the last writer wins
        assert b"".join(b.volume.read_file(name)) == b"second"


def test_an_image_is_built_on_the_node_that_runs_the_container_and_its_log_reaches_the_caller(on_ray, sandbox):
    with b.built_app.run(show_logs=False):
        python, marker, niceness = b.built_where.remote()
        deadline = time.monotonic() + 30
        while not any("[node " in line and "Built image" in line for line in _app_log("tests-backends-built")):
            assert time.monotonic() < deadline, "the node's build log never reached the app's log"
            time.sleep(0.2)
    assert marker == "built"
    # not at Ray's worker niceness (15), which starves builds and functions beside any busy process
    assert niceness == 0 or os.geteuid() != 0
    assert "/shoal-ray/" in python  # the node's own build, not the server's (which is under SHOAL_HOME)


def _app_log(app: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "shoal", "app", "logs", app], capture_output=True, text=True,
                          cwd=REPO, env=os.environ, timeout=60)  # fmt: skip
    return done.stdout.splitlines()


def test_a_gpu_the_cluster_does_not_have_is_refused_at_deploy_saying_what_it_has(on_ray):
    with pytest.raises(shoal.exception.Error) as refused:
        with b.a100_app.run(show_logs=False):
            pass
    assert "A100" in str(refused.value) and "T4" in str(refused.value)


def test_the_server_status_shows_the_ray_backend_and_cluster_capacity(on_ray):
    info = httpx.get(f"{on_ray.url}/server", headers=on_ray.auth, timeout=30).json()
    assert info["backend"] == "RayBackend" and info["cpus"] >= 3 and info["gpus"] == 1


def test_actors_of_a_previous_control_plane_are_killed_when_it_starts_again(ray_cluster, tmp_path):
    import ray

    from tests.conftest import ServerProcess

    state = tmp_path / "restarted"
    args = ("--backend", "ray", "--ray-address", ray_cluster.address)
    first = ServerProcess(state, env={"SHOAL_TOKEN": RAY_TOKEN}, args=args)
    first.proc.kill()  # no chance to clean up: its actors (none yet) would be left
    first.stop()
    # leave an actor the way a dead control plane would: detached, named like a container, in its namespace
    from shoal.backends.ray_backend import RayBackend

    namespace = RayBackend.namespace_for(state)
    script = (
        "import ray, time\n"
        f"ray.init(address={ray_cluster.address!r}, namespace={namespace!r})\n"
        "@ray.remote(num_cpus=0, resources={'node:__internal_head__': 0.001})\n"  # not on a node being replaced
        "class Left:\n"
        "    def ping(self): return 1\n"
        "a = Left.options(name='ta-left00000000000000', lifetime='detached').remote()\n"
        "ray.get(a.ping.remote())\n"
    )
    left = subprocess.run([sys.executable, "-c", script], timeout=120, capture_output=True, text=True)
    assert left.returncode == 0, left.stderr[-3000:]
    ray.init(address=ray_cluster.address, namespace=namespace)
    try:
        assert "ta-left00000000000000" in ray.util.list_named_actors()
        second = ServerProcess(state, env={"SHOAL_TOKEN": RAY_TOKEN}, args=args)
        try:
            wait_for(lambda: "ta-left00000000000000" not in ray.util.list_named_actors(), 30)
        finally:
            second.stop()
    finally:
        ray.shutdown()


def test_every_ray_process_the_tests_started_listens_on_loopback_only(ray_cluster, ray_server):
    def is_ray(process: psutil.Process) -> bool:
        with_ray = "ray" in " ".join(process.info["cmdline"] or []).lower()
        return with_ray or process.pid == ray_server.proc.pid  # the server is a Ray driver too

    pids = {p.pid for p in psutil.process_iter(["cmdline"]) if is_ray(p)}
    listening = [c for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert len({c.pid for c in listening}) >= 4  # GCS, three raylets, workers, ...
    for conn in listening:
        assert ipaddress.ip_address(conn.laddr.ip.removeprefix("::ffff:")).is_loopback, conn
