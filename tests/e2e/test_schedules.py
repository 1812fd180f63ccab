"""Schedules fire as ordinary calls: while an ephemeral app runs, and durably for deployed apps (issue 12, part 2)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import shoal
from tests.apps import scheduled
from tests.conftest import REPO, ServerProcess


def ticks() -> shoal.Queue:
    """A fresh handle on the ticks queue, resolved on the server in use now."""
    return shoal.Queue.from_name("tests-scheduled-ticks", create_if_missing=True)


def next_ticks(n: int, timeout: float = 15) -> list[str]:
    q = ticks()
    return [q.get(timeout=timeout) for _ in range(n)]


def test_an_ephemeral_apps_schedule_fires_while_it_runs(server):
    ticks().clear()
    with scheduled.app.run(show_logs=False):
        ids = next_ticks(2)
    assert len(set(ids)) == 2 and all(i.startswith("fc-") for i in ids)  # each tick its own call


def test_a_deployed_schedule_survives_a_restart_shows_its_times_and_stops_with_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    state = tmp_path / "scheduled"
    srv = ServerProcess(state)
    port = int(srv.url.rsplit(":", 1)[1])
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    try:
        # Given a deployed app whose function runs every second
        scheduled.app.deploy()
        first = next_ticks(2)
        # When the server is killed and started again, Then the schedule keeps firing
        srv.proc.send_signal(signal.SIGKILL)
        srv.stop()
        srv = ServerProcess(state, port=port)
        fresh: set[str] = set()
        while len(fresh) < 2:  # a tick killed mid-run runs again (at-least-once): the same call id, not a new tick
            fresh |= set(next_ticks(1)) - set(first)
        # and `shoal app list` shows its last and next fire times
        listed = subprocess.run(
            [sys.executable, "-m", "shoal", "app", "list", "--json"], cwd=REPO, capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
        )  # fmt: skip
        app = next(a for a in json.loads(listed.stdout) if a["name"] == "tests-scheduled" and a["state"] == "RUNNING")
        (entry,) = app["schedules"]
        assert entry["function"] == "tick" and entry["schedule"] == "Period(seconds=1)"
        assert entry["next_fire"] > entry["last_fire"]
        # When the app is stopped, Then no tick fires any more
        stopped = subprocess.run(
            [sys.executable, "-m", "shoal", "app", "stop", "tests-scheduled"], cwd=REPO, capture_output=True,
            text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
        )  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr
        q = ticks()
        q.clear()
        with pytest.raises(queue.Empty):
            q.get(timeout=3)
    finally:
        srv.stop()
