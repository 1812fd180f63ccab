"""Resources on one machine (issue 28): GPUs assigned one container each, CPUs and memory reserved, the rest
waiting visibly, shared fairly, and what the machine lacks refused at deploy. On a fake inventory of two T4s,
two CPUs and 1000 MiB (SHOAL_FAKE_GPUS, SHOAL_CPUS, SHOAL_MEMORY_MIB): CI has no GPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import shoal
from tests.apps import resources as r
from tests.conftest import REPO, ServerProcess, wait_for

MACHINE = {"SHOAL_FAKE_GPUS": "T4,T4", "SHOAL_CPUS": "2", "SHOAL_MEMORY_MIB": "1000", "SHOAL_SAMPLE_INTERVAL": "0.5"}


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("resources") / "state", env=MACHINE)
    saved = os.environ.get("SHOAL_SERVER_URL")
    os.environ["SHOAL_SERVER_URL"] = srv.url
    try:
        yield srv
    finally:
        if saved is None:
            os.environ.pop("SHOAL_SERVER_URL", None)
        else:
            os.environ["SHOAL_SERVER_URL"] = saved
        srv.stop()


def _containers(srv: ServerProcess) -> list[dict[str, Any]]:
    return list(httpx.get(f"{srv.url}/containers", headers=srv.auth, timeout=30).json()["containers"])


def test_four_t4_containers_on_two_t4s_run_two_at_a_time_on_distinct_gpus_and_the_rest_wait_visibly(machine):  # noqa: ANN001
    with r.app.run(show_logs=False):
        calls = [r.on_t4.spawn(1.5) for _ in range(4)]
        rows = wait_for(lambda: [c for c in _containers(machine) if c["waiting_for"]])
        assert rows[0]["waiting_for"] == "waiting for a GPU (T4): 2 of 2 in use", rows
        listing = subprocess.run([sys.executable, "-m", "shoal", "container", "list"], capture_output=True, text=True,
                                 cwd=REPO, env=os.environ, timeout=60)  # fmt: skip
        assert "waiting for a GPU (T4): 2 of 2 in use" in listing.stdout, listing.stdout + listing.stderr
        info = httpx.get(f"{machine.url}/server", headers=machine.auth, timeout=30).json()
        runs = [call.get(timeout=60) for call in calls]
        logs = subprocess.run([sys.executable, "-m", "shoal", "app", "logs", r.app.app_id or ""], capture_output=True,
                              text=True, cwd=REPO, env=os.environ, timeout=60)  # fmt: skip
    # the caller's terminal (the app's log) said once that containers waited, and for what
    assert re.search(r"of on_t4 waiting for a GPU \(T4\): 2 of 2 in use", logs.stdout), logs.stdout + logs.stderr
    assert r.most_at_once(runs) == 2, runs
    assert {run["cuda"] for run in runs} <= {"0", "1"} and all(run["nvidia"] == run["cuda"] for run in runs)
    for a, b in r.overlapping(runs):
        assert a["cuda"] != b["cuda"], (a, b)  # never one GPU for two containers at once
    # the server says what the machine has and what is reserved of it (shoal server status shows this)
    assert info["gpus"] == 2 and info["usage"]["gpus_in_use"] == 2 and info["usage"]["gpu_types"] == "2 x T4", info


def test_a_two_gpu_container_takes_both_and_a_preference_list_takes_the_type_the_machine_has(machine):  # noqa: ANN001
    with r.app.run(show_logs=False):
        assert r.on_both.remote(0.0)["cuda"] == "0,1"
        assert r.preferring_a100.remote(0.0)["cuda"] in ("0", "1")


def test_a_gpu_type_the_machine_lacks_is_refused_at_deploy_naming_what_it_has(machine):  # noqa: ANN001
    with pytest.raises(shoal.exception.InvalidError, match=r"A100.*2 x T4"):
        with r.refused.run(show_logs=False):
            pass


def test_a_cpu_1_function_on_two_cpus_runs_at_most_two_containers_under_a_cap_of_eight(machine):  # noqa: ANN001
    with r.app.run(show_logs=False):
        runs = list(r.one_cpu.map([0.7] * 6))
    assert r.most_at_once(runs) == 2, runs


def test_memory_requests_beyond_the_machine_wait(machine):  # noqa: ANN001
    with r.app.run(show_logs=False):
        runs = list(r.big_memory.map([0.7] * 5))  # 400 MiB each of 1000: two at once
    assert r.most_at_once(runs) == 2, runs


def test_a_function_waiting_for_a_gpu_gets_one_within_an_input_of_a_function_holding_both(machine):  # noqa: ANN001
    with r.app.run(show_logs=False):
        hog = r.on_t4.spawn_map([1.0] * 24)  # both GPUs for ~12 s
        wait_for(
            lambda: len([c for c in _containers(machine) if c["function"] == "on_t4" and c["running_inputs"]]) == 2
        )
        started = time.monotonic()
        r.newcomer.remote(0.0)
        waited = time.monotonic() - started
        hog.cancel()
    assert waited < 8, waited  # an input of the hog (1 s) and a start, not the hog's backlog (~12 s)


def test_the_container_function_and_call_pages_chart_cpu_memory_throughput_and_containers(machine, browser, tmp_path):  # noqa: ANN001
    from selenium.webdriver.common.by import By

    from tests.pages import settled

    shots = REPO / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    with r.app.run(show_logs=False):
        call = r.burn.spawn_map([0.4] * 16)  # two containers busy for ~3 s, sampled every 0.5 s
        containers = set(call.iter())
        call_id = call.object_id
        app_id = r.app.app_id
    browser.get(f"{machine.url}/dashboard/login?token={machine.token}")
    browser.set_window_size(1400, 900)

    def chart(name: str) -> tuple[int, float]:
        def read() -> tuple[int, float]:
            figure = browser.find_element(By.ID, f"chart-{name}")
            return int(figure.get_attribute("data-points") or 0), float(figure.get_attribute("data-peak") or 0)

        return settled(read)  # a page may refresh itself under the reader

    # The container's page charts its CPU (a busy loop: most of a core at its peak) and memory over time
    browser.get(f"{machine.url}/dashboard/containers/{sorted(containers)[0]}")
    points, peak = chart("cpu")
    assert points >= 3 and peak > 30, (points, peak)
    assert chart("memory")[1] > 5  # MiB: a Python process
    assert browser.find_element(By.CSS_SELECTOR, "#chart-cpu svg polyline").get_attribute("points")
    assert browser.save_screenshot(str(shots / "container-charts.png"))
    # the call's page charts its throughput and running containers
    browser.get(f"{machine.url}/dashboard/calls/{call_id}")
    assert chart("throughput")[0] >= 2 and chart("throughput")[1] > 0
    assert chart("containers")[1] == 2  # two T4s: two containers at most
    assert browser.save_screenshot(str(shots / "call-charts.png"))
    # and the app's page charts each function's containers summed
    browser.get(f"{machine.url}/dashboard/apps/{app_id}")
    assert chart("burn-cpu")[0] >= 3


pytestmark = pytest.mark.timeout(180)
