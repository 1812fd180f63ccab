"""End-to-end regressions for the trust issue (11): results next to failures, retry wake-ups, a shared cap.

Each test failed on the code before its fix; docs/guarantees.md names them.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.apps import trust
from tests.apps.trust import Boom
from tests.conftest import ServerProcess, shared_dir


@pytest.fixture(scope="module", autouse=True)
def running(server):  # noqa: ANN001, ANN201
    with trust.app.run(show_logs=False):
        yield


def _take_until_error(iterator) -> tuple[list, BaseException | None]:  # noqa: ANN001
    got = []
    try:
        for value in iterator:
            got.append(value)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return got, exc
    return got, None


def test_ordered_map_yields_every_result_before_the_failing_input_then_raises_it():
    # Given 200 inputs of which input 100 fails, When mapped in order, Then 0..99 come back, then Boom.
    got, error = _take_until_error(trust.fail_at.map(range(200), kwargs={"bad": 100}))
    assert got == list(range(100))
    assert isinstance(error, Boom) and "input 100" in str(error)


def test_unordered_map_yields_what_finished_before_the_failure_arrived():
    # Given a failing input that takes a second, When mapped unordered, Then all 199 others arrive first.
    got, error = _take_until_error(
        trust.fail_at.map(range(200), kwargs={"bad": 199, "delay_bad": 1.5}, order_outputs=False)
    )
    assert sorted(got) == list(range(199))
    assert isinstance(error, Boom)


def test_function_call_iter_yields_finished_results_before_a_failure_and_can_return_exceptions():
    call = trust.fail_at.spawn_map(range(300), kwargs={"bad": 150})
    assert call.get(timeout=60, index=299) == 299  # every input has finished
    got, error = _take_until_error(call.iter())
    assert got == list(range(150))
    assert isinstance(error, Boom)
    everything = list(call.iter(return_exceptions=True))
    assert len(everything) == 300
    assert isinstance(everything[150], Boom)
    assert everything[:150] + everything[151:] == [x for x in range(300) if x != 150]
    assert list(call.iter(start=10, end=20)) == list(range(10, 20))


def test_a_retry_starts_within_its_backoff_not_at_the_next_idle_poll():
    # Given retries with a 1 s backoff, When the function fails twice, Then each retry starts within ~1.1 s.
    marker = os.path.join(shared_dir(), "attempts")
    times = trust.flaky_twice.remote(marker)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) == 2
    assert all(0.9 <= gap <= 1.6 for gap in gaps), gaps


def test_a_sigterm_server_exits_fast_and_its_live_clients_lose_nothing(tmp_path, monkeypatch):  # noqa: ANN001
    # Given a map running against a server that reaps silent clients after 5 s (clients ping every 3 s)
    state = tmp_path / "graceful"
    env = {"SHOAL_CLIENT_TIMEOUT": "5"}
    srv = ServerProcess(state, env=env)
    port = int(srv.url.rsplit(":", 1)[1])
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    results, stop_seconds = [], None
    try:
        with trust.restart_app.run(show_logs=False):
            for i, value in enumerate(trust.steady.map(range(1500))):
                results.append(value)
                if i == 300:
                    # When the server gets SIGTERM mid-map, and stays down longer than the client timeout
                    started = time.monotonic()
                    srv.proc.terminate()
                    srv.proc.wait(30)
                    stop_seconds = time.monotonic() - started
                    srv.stop()
                    time.sleep(6)
                    srv = ServerProcess(state, env=env, port=port)
    finally:
        srv.stop()
    # Then it stopped within 5 s, and after the restart every input ended in its own result: none was cancelled
    assert stop_seconds is not None and stop_seconds <= 5, stop_seconds
    assert results == list(range(1500))


def test_idle_containers_of_one_function_do_not_starve_another(tmp_path, monkeypatch):  # noqa: ANN001
    # Given a machine-wide cap of 4 containers, all taken by a function that just finished a map
    srv = ServerProcess(tmp_path / "cap", env={"SHOAL_MAX_TOTAL_CONTAINERS": "4"})
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    try:
        with trust.cap_app.run(show_logs=False):
            assert sorted(trust.hog.map(range(200))) == list(range(200))
            # When another function is called, Then it gets a container within seconds (not the 60 s window)
            started = time.monotonic()
            assert trust.other.remote(1) == 2
            waited = time.monotonic() - started
    finally:
        srv.stop()
    assert waited < 5, waited
