"""Scale and lifecycle: streaming a 100,000-input map in bounded memory, autoscaling to zero, load failures."""

from __future__ import annotations

import time

import psutil
import pytest

import shoal
from shoal.exception import ExecutionError
from tests.conftest import REPO, run_script

MAP_100K = """
import resource, sys, time
import psutil
from tests.apps import basic
me = psutil.Process()
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
phases = [("imported", peak())]
samples = []
with basic.app.run(show_logs=False):
    phases.append(("app running", peak()))
    t = time.monotonic()
    n = 0
    for i, r in enumerate(basic.square.map(range(100_000))):
        assert r == i * i
        n += 1
        if n % 5_000 == 0:
            samples.append(me.memory_info().rss // 2**20)
    phases.append(("mapped", peak()))
print(n, round(time.monotonic() - t, 2), max(samples), phases)
"""


def test_a_100k_input_map_streams_with_bounded_client_memory(server):
    result = run_script(["-c", MAP_100K], timeout=300)
    assert result.returncode == 0, result.stderr
    count, seconds, during_map, phases = result.stdout.split(maxsplit=3)
    assert int(count) == 100_000
    # RSS sampled every 5,000 results while the map streams: the window bounds what the client holds.
    assert int(during_map) < 200, f"client RSS reached {during_map} MiB during the map ({seconds} s); peaks: {phases}"


def test_the_quick_start_runs_on_an_embedded_server_and_streams_container_output():
    # No SHOAL_SERVER_URL: app.run() starts (and stops) its own server.
    result = run_script([str(REPO / "examples" / "quickstart.py")], env={"SHOAL_SERVER_URL": ""})
    assert result.returncode == 0, result.stderr
    assert "remote: {'id': 1, 'processed_value': 4}" in result.stdout
    assert "map: 100 results" in result.stdout
    assert "run_batch returned 100 items" in result.stdout
    assert "run_batch: fanning out 100 items from inside a container" in result.stdout


def test_containers_scale_to_zero_after_the_scaledown_window(server):
    app = shoal.App("scaledown")

    @app.function(serialized=True, scaledown_window=1, max_containers=1)
    def ping(x: int) -> int:
        return x

    with app.run(show_logs=False):
        before = set(server.container_pids())
        assert ping.remote(1) == 1
        mine = [p for p in server.container_pids() if p not in before]
        assert len(mine) == 1
        proc = psutil.Process(mine[0])
        started = time.monotonic()
        proc.wait(timeout=15)  # exits on its own once idle past the window
        assert time.monotonic() - started >= 0.5


def test_a_module_that_fails_to_import_in_the_container_fails_fast(server):
    from tests.apps import broken_import

    with broken_import.app.run(show_logs=False):
        started = time.monotonic()
        with pytest.raises(ExecutionError, match="cannot be imported inside a container"):
            broken_import.never_runs.remote(1)
        assert time.monotonic() - started < 15
