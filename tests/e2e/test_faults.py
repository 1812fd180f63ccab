"""Fault tests: real signals against real container processes; every input still ends in exactly one result."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import psutil
import pytest

from shoal.exception import ExecutionError, FunctionTimeoutError
from tests.apps import faults
from tests.conftest import interpreter_pid, shared_dir, wait_until_gone


@pytest.fixture(scope="module", autouse=True)
def running(server):  # noqa: ANN001, ANN201
    with faults.app.run(show_logs=False):
        yield


def test_sigkill_containers_during_a_map_loses_and_duplicates_nothing(server):
    # Given a 2,000-input map on several containers
    results: list[int] = []
    done = threading.Event()

    def consume() -> None:
        try:
            results.extend(faults.busy.map(range(2000)))
        finally:
            done.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    # When busy containers are SIGKILLed while it runs
    kills = 0
    rng = random.Random(7)
    while kills < 4 and not done.wait(0.7):
        pids = server.busy_container_pids()
        if pids:
            os.kill(rng.choice(pids), signal.SIGKILL)
            kills += 1
    consumer.join(120)
    # Then every input has exactly one, correct result, in order
    assert kills >= 2, "the map finished before the fault could be injected"
    assert results == [3 * x for x in range(2000)]


def test_a_container_exiting_on_one_input_fails_only_that_input():
    out = list(faults.exit_on_13.map(range(40), return_exceptions=True))
    assert [x for i, x in enumerate(out) if i != 13] == [i for i in range(40) if i != 13]
    assert isinstance(out[13], ExecutionError)
    assert "exited unexpectedly" in str(out[13])
    assert "exit code 1" in str(out[13])
    assert "about to die on 13" in str(out[13])  # its last output is in the error, not in a file that may be gone


def test_an_infinite_loop_times_out_per_attempt_and_leaves_no_orphan():
    marker = shared_dir()  # each attempt leaves its container's pid here
    started = time.monotonic()
    with pytest.raises(FunctionTimeoutError, match="timed out after 2s"):
        faults.spin_forever.remote(marker)
    elapsed = time.monotonic() - started
    # two attempts of 2 s each, plus container starts
    assert 3.5 < elapsed < 20, elapsed
    containers = {name.split("-", 1)[1] for name in os.listdir(marker)}
    assert len(containers) == 2
    assert wait_until_gone(containers, timeout=5) == []


def test_a_container_that_stops_heartbeating_is_killed_and_its_input_rerun():
    # Given an input running in a container
    marker = shared_dir()
    call = faults.report_pid_then_sleep.spawn(marker, 1.0)
    while not os.listdir(marker):  # bounded by the pytest timeout; the input writes its pid first
        time.sleep(0.05)
    (stopped,) = [n.split("-", 1)[1] for n in os.listdir(marker)]
    stopped_pid = interpreter_pid(stopped)
    # When the container is frozen (no heartbeats, as if hung)
    os.kill(stopped_pid, signal.SIGSTOP)
    # Then the server kills it after the heartbeat timeout and the input runs again elsewhere
    assert call.get(timeout=60) != stopped
    assert not psutil.pid_exists(stopped_pid) or psutil.Process(stopped_pid).status() == psutil.STATUS_ZOMBIE
