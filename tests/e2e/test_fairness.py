"""Fair shares under a machine-wide cap (issue 24, item 8): functions that arrive while others hold every
container with long backlogs start within seconds, not after those backlogs."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.apps import fairness
from tests.conftest import ServerProcess


def test_ten_competing_functions_each_start_their_first_map_within_seconds(tmp_path: Path, monkeypatch):
    srv = ServerProcess(tmp_path / "state", env={"SHOAL_MAX_TOTAL_CONTAINERS": "10"})
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    try:
        with fairness.app.run(show_logs=False):
            # Given two functions whose backlogs (1,000 inputs of 0.2 s each) hold every container of the cap
            hogs = [fn.spawn_map(range(1000)) for fn in fairness.hogs]
            assert [call.get(timeout=60, index=0) for call in hogs] == [0, 0]  # both run

            # When eight more functions each start a map, all at once
            def first_result(fn: object) -> float:
                started = time.monotonic()
                for _ in fn.map(range(3)):  # type: ignore[attr-defined]
                    return time.monotonic() - started
                raise AssertionError("no result")

            with ThreadPoolExecutor(8) as pool:
                waits = list(pool.map(first_result, fairness.late))
            # Then each got its first result within seconds (its fair share), long before the backlogs end (~20 s)
            assert max(waits) < 12, waits
            for call in hogs:
                call.cancel()
    finally:
        srv.stop()


pytestmark = pytest.mark.timeout(120)
