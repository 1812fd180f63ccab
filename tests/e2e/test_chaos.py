"""Chaos: containers and the control plane killed at random while work runs. Nothing lost, nothing duplicated."""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import shoal
from tests import postgres
from tests.apps import reliability
from tests.conftest import ServerProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_in_thread(fn, *args):  # noqa: ANN001, ANN002, ANN201
    box: dict[str, object] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    return box, done


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM then SIGKILL"])
def test_killing_busy_containers_during_a_10k_map(server, how: str):
    with reliability.app.run(show_logs=False):
        box, done = run_in_thread(lambda: list(reliability.work.map(range(10_000))))
        rng = random.Random(how)
        kills = 0
        while kills < 20 and not done.wait(0.3):
            pids = server.busy_container_pids()
            if not pids:
                continue
            pid = rng.choice(pids)
            if how == "SIGKILL":
                os.kill(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGTERM)
                time.sleep(0.1)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            kills += 1
        assert done.wait(180), "the map did not finish"
        assert "error" not in box, box.get("error")
        assert box["result"] == [7 * x for x in range(10_000)]  # every result, once, in order
        assert kills >= 10, f"only {kills} kills landed before the map finished"
        # capacity comes back, and no dead container still holds a lease
        assert list(reliability.work.map(range(200))) == [7 * x for x in range(200)]
        from shoal._sync import run_sync
        from shoal.client import client_for

        containers = run_sync(client_for(server.url).request("GET", "/containers?all=1"))["containers"]
        mine = [c for c in containers if c["function"] == "work" and c["app_name"] == "tests-reliability"]
        assert all(c["running_inputs"] == 0 for c in mine if c["state"] == "STOPPED")
        assert sum(c["state"] == "RUNNING" for c in mine) >= 1


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_killing_the_control_plane_20_times_during_map_and_spawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str
):
    state, port = tmp_path / "state", free_port()
    env = {"SHOAL_STORE": postgres.shared().new_database()} if store == "postgresql" else {}

    def start() -> ServerProcess:
        return ServerProcess(state, port=port, env=env)

    srv = start()
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    try:
        with reliability.app.run(show_logs=False):
            calls = [reliability.work.spawn(i) for i in range(20)]
            box, done = run_in_thread(lambda: list(reliability.work.map(range(3000))))
            restarts = 0
            rng = random.Random(1)
            while restarts < 20:
                time.sleep(rng.uniform(0.2, 0.6))
                srv.proc.send_signal(signal.SIGKILL)
                srv.proc.wait()
                srv.stop()
                srv = start()
                restarts += 1
                if restarts % 5 == 0:
                    calls.append(reliability.work.spawn(1000 + restarts))
            assert done.wait(240), "the map did not finish after the restarts"
            assert "error" not in box, box.get("error")
            assert box["result"] == [7 * x for x in range(3000)]
            expected = list(range(20)) + [1000 + r for r in (5, 10, 15, 20)]
            assert [c.get(timeout=120) for c in calls] == [7 * x for x in expected]
            assert [shoal.FunctionCall.from_id(c.object_id).get(timeout=60) for c in calls[:3]] == [0, 7, 14]
    finally:
        srv.stop()
    if store == "postgresql":
        import psycopg

        with psycopg.connect(env["SHOAL_STORE"]) as conn:
            rows = conn.execute("SELECT call_id, idx, count FROM outputs ORDER BY call_id, idx").fetchall()
    else:
        db = sqlite3.connect(state / "state.db")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT call_id, idx, count FROM outputs ORDER BY call_id, idx").fetchall()
        db.close()
    ends: dict[str, int] = {}  # no two output rows (chunks hold several inputs) cover the same input
    for call_id, idx, count in rows:
        assert idx >= ends.get(call_id, 0), f"input {idx} of {call_id} has two outputs"
        ends[call_id] = idx + count
