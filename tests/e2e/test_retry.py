"""Re-run only what failed (issue 29, item 1): a 1,000-input map with 37 failures, the cause fixed (a Dict flag
the function reads), then ``retry_failed()`` from the SDK, ``shoal call retry`` from another process, and the
call page's button; also after a SIGKILL of the server between the map and the retry. Every index then has its
success exactly once, in order through ``iter()``, and an input's page lists both its attempts."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

import shoal
from tests.apps import retrying
from tests.conftest import ServerProcess
from tests.e2e.test_cli import shoal_cli

FAILING = [x for x in range(1000) if retrying.failing(x)]


def _failed_map(flag: str) -> shoal.FunctionCall:
    call = retrying.check.spawn_map(range(1000), [flag] * 1000)
    results = list(call.iter(return_exceptions=True))
    assert [i for i, r in enumerate(results) if isinstance(r, Exception)] == FAILING
    assert len(FAILING) == 37
    return call


def _attempts_on_the_input_page(url: str, token: str, call_id: str, index: int) -> str:
    with httpx.Client(base_url=url, follow_redirects=True, timeout=30) as browser:
        browser.get(f"/dashboard/login?token={token}")
        return browser.get(f"/dashboard/calls/{call_id}/inputs/{index}").text


def test_retry_failed_runs_only_the_failures_again_under_the_same_call_and_keeps_their_first_attempts(server):
    flag = f"retry-sdk-{time.time_ns()}"
    with retrying.app.run(show_logs=False):
        call = _failed_map(flag)
        # a retry that chooses nothing is refused, saying what to choose
        with pytest.raises(shoal.exception.InvalidError, match="choose"):
            call.retry_failed(failed=False)
        shoal.Dict.from_name(flag).put("fixed", True)
        assert call.retry_failed() == 37
        assert list(call.iter()) == list(range(1000))  # every index once, in order, the new results in place
        assert call.get(index=FAILING[0]) == FAILING[0]
        assert call.retry_failed() == 0  # nothing failed any more
        page = _attempts_on_the_input_page(server.url, server.token, call.object_id, FAILING[0])
    assert page.count("<tr><td>") == 2 and "record 13 has a negative amount" in page and "SUCCESS" in page


def test_shoal_call_retry_from_another_process_after_a_sigkill_of_the_server(tmp_path: Path, monkeypatch):  # noqa: ANN001
    state = tmp_path / "state"
    srv = ServerProcess(state)
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    flag = f"retry-cli-{time.time_ns()}"
    try:
        with retrying.app.run(show_logs=False):
            call = _failed_map(flag)
            srv.proc.kill()  # SIGKILL between the map and the retry
            srv.stop()  # (it is dead already: this reaps it)
            srv = ServerProcess(state, port=int(srv.url.rsplit(":", 1)[1]))
            shoal.Dict.from_name(flag).put("fixed", True)
            retried = shoal_cli("call", "retry", call.object_id, env={"SHOAL_SERVER_URL": srv.url})
            assert retried.returncode == 0, retried.stderr
            assert f"37 inputs of {call.object_id} queued again" in retried.stdout
            assert list(shoal.FunctionCall.from_id(call.object_id).iter()) == list(range(1000))
    finally:
        srv.stop()


def test_the_call_page_retries_the_failed_inputs_with_a_button(server, browser):  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.pages import settled, text_of

    flag = f"retry-page-{time.time_ns()}"
    with retrying.app.run(show_logs=False):
        call = _failed_map(flag)
        shoal.Dict.from_name(flag).put("fixed", True)
        browser.get(f"{server.url}/dashboard/login?token={server.token}")
        browser.get(f"{server.url}/dashboard/calls/{call.object_id}")
        settled(lambda: browser.find_element(By.ID, "retry").click())  # the page refreshes itself: reads settle
        WebDriverWait(browser, 60).until(lambda b: "SUCCEEDED" in text_of(b, "progress"))
        assert list(call.iter()) == list(range(1000))


pytestmark = pytest.mark.timeout(300)
