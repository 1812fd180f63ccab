"""Durable handles: re-attaching to a map after its client died, result expiry, call graphs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import shoal
from shoal.exception import OutputExpiredError
from tests.apps import basic
from tests.conftest import ServerProcess, run_script

CRASHING_CLIENT = """
import os, sys
from tests.apps import basic
app_run = basic.app.run(show_logs=False)
app_run.__enter__()
results = basic.slow_identity.map(range(30), kwargs={"delay": 0.1})
first = next(results)
print(results.function_call_id, first, flush=True)
os._exit(1)  # the client dies mid-map, without stopping its app
"""


def test_a_map_can_be_reattached_by_id_after_its_client_died(server):
    result = run_script(["-c", CRASHING_CLIENT])
    assert result.returncode == 1, result.stderr
    call_id, first = result.stdout.split()
    assert call_id.startswith("fc-") and first == "0"
    assert list(shoal.FunctionCall.from_id(call_id).iter()) == list(range(30))


def test_results_expire_after_the_retention_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    srv = ServerProcess(tmp_path / "expiring", env={"SHOAL_RESULT_RETENTION": "0.2", "SHOAL_EXPIRY_INTERVAL": "0.1"})
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    try:
        app = shoal.App("expiring")

        @app.function(serialized=True)
        def one(x: int) -> int:
            return x

        with app.run(show_logs=False):
            call = one.spawn(5)
            assert call.get(timeout=30) == 5
            handle = shoal.FunctionCall.from_id(call.object_id)
            deadline = time.monotonic() + 15
            with pytest.raises(OutputExpiredError):
                while time.monotonic() < deadline:  # the janitor runs every 0.1 s, expiring results older than 0.2 s
                    handle.get(timeout=0)
    finally:
        srv.stop()


def test_call_graph_includes_nested_calls(server):
    with basic.app.run(show_logs=False):
        call = basic.nested_sum.spawn(3)
        assert call.get(timeout=60) == 5
        (root,) = call.get_call_graph()
    assert root.function_call_id == call.object_id
    assert root.function_name == "nested_sum"
    assert [c.function_name for c in root.children] == ["square"]
    assert root.children[0].status == "SUCCEEDED"


def test_server_restart_keeps_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    state = tmp_path / "restart"
    srv = ServerProcess(state)
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    app = shoal.App("restart")

    @app.function(serialized=True)
    def triple(x: int) -> int:
        return 3 * x

    with app.run(show_logs=False):
        call = triple.spawn_map(range(10))
        # every result in before the app stops (the last index can finish before another on a second container)
        assert list(call.iter()) == [3 * i for i in range(10)]
    srv.stop()
    again = ServerProcess(state)
    try:
        monkeypatch.setenv("SHOAL_SERVER_URL", again.url)
        assert list(shoal.FunctionCall.from_id(call.object_id).iter()) == [3 * i for i in range(10)]
    finally:
        again.stop()
    assert os.path.exists(state / "state.db")
