"""The dashboard in a real headless browser (Debian's Chromium through its driver), against a real server: a map
with failures, its grouped tracebacks, an input's attempts and logs, a live map followed to 100% without a reload,
a cancel from the page, storage without secret values, and the token login. Access rules are also checked over
plain HTTP.

``UPDATE_SCREENSHOTS=1`` writes the screenshots it takes to ``docs/screenshots/`` (linked from the README);
otherwise they go to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import shoal
from shoal.exception import InputCancellation
from tests.apps import dashboard as dash
from tests.conftest import REPO, ServerProcess, shared_dir
from tests.pages import follow, log_in, settled, text_of


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = REPO / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(browser: Any, folder: Path, name: str) -> None:
    browser.set_window_size(1400, 900)
    assert browser.save_screenshot(str(folder / f"{name}.png"))


def test_a_map_with_failures_its_grouped_tracebacks_an_input_its_containers_and_logs(server, browser, shots):
    log_in(browser, server)
    with dash.app.run(show_logs=False):
        call = dash.flaky.spawn_map(range(40))
        results = list(call.iter(return_exceptions=True))
        assert sum(isinstance(r, Exception) for r in results) == 5
        url = call.get_dashboard_url()
        assert url == f"{server.url}/dashboard/calls/{call.object_id}?token={server.token}"

        # the call: counts, and failures grouped by type and message with the user's traceback and input indexes
        browser.get(url)
        assert text_of(browser, "count-succeeded") == "35 succeeded"
        assert text_of(browser, "count-failed") == "5 failed"
        assert text_of(browser, "percent") == "100.0%"
        summaries = settled(lambda: [g.text for g in browser.find_elements(By.CSS_SELECTOR, "#failures summary")])
        assert summaries == ["4× ValueError: the input ends in 7", "1× KeyError: 'twelve'"]
        first = "#failures details.failure:first-of-type "
        links = settled(lambda: [a.text for a in browser.find_elements(By.CSS_SELECTOR, first + "p a")])
        assert links == ["#7", "#17", "#27", "#37"]
        traceback = settled(lambda: browser.find_element(By.CSS_SELECTOR, first + "pre.traceback").text)
        assert 'raise ValueError("the input ends in 7")' in traceback and "dashboard.py" in traceback
        assert "runtime.py" not in traceback  # the container's own frames are left out
        shoot(browser, shots, "call")

        # one input: its attempt, its container, its log line
        follow(browser, By.LINK_TEXT, "#17", lambda url: url.endswith("/inputs/17"))
        assert browser.find_element(By.TAG_NAME, "h1").text == "Input #17"
        crumbs = browser.find_element(By.CSS_SELECTOR, "p.crumbs").text
        assert crumbs.startswith("Apps / tests-dashboard / "), crumbs  # the app by its name, not "app"
        attempts = settled(lambda: browser.find_element(By.CSS_SELECTOR, "#input table").text)
        assert "FAILURE" in attempts and "ValueError: the input ends in 7" in attempts
        assert "processing 17" in settled(lambda: browser.find_element(By.CSS_SELECTOR, "#input .logs").text)
        container_id = settled(lambda: browser.find_element(By.CSS_SELECTOR, "#input table a").text)
        assert container_id.startswith("ta-")

        # the app: per-function counters and latencies
        browser.get(f"{server.url}/dashboard/apps/{dash.app.app_id}")
        row = 'tr[data-function="flaky"] '
        assert settled(lambda: browser.find_element(By.CSS_SELECTOR, row + ".succeeded").text) == "35"
        assert settled(lambda: browser.find_element(By.CSS_SELECTOR, row + ".failed").text) == "5"
        row_text = settled(lambda: browser.find_element(By.CSS_SELECTOR, row).text)
        assert re.search(r"\d+(\.\d)? (µs|ms|s) / ", row_text), row_text  # execution p50 / p95
        shoot(browser, shots, "app")

        # the apps list, the container's page with its log tail
        browser.get(f"{server.url}/dashboard/apps")
        assert "tests-dashboard" in text_of(browser, "apps")
        shoot(browser, shots, "apps")
        browser.get(f"{server.url}/dashboard/containers/{container_id}")
        assert "flaky" in text_of(browser, "container")
        assert "processing" in text_of(browser, "container-logs")
        browser.get(f"{server.url}/dashboard/containers")
        assert container_id in text_of(browser, "containers")
        shoot(browser, shots, "containers")

        # logs: filtered by call and searched
        browser.get(f"{server.url}/dashboard/logs?call={call.object_id}&q=processing+12")
        lines = settled(lambda: [x.text for x in browser.find_elements(By.CSS_SELECTOR, "#log-lines .line .text")])
        assert lines == ["processing 12"]
        # each line says its app and function
        apps = settled(lambda: [x.text for x in browser.find_elements(By.CSS_SELECTOR, "#log-lines .line .app")])
        functions = settled(lambda: [x.text for x in browser.find_elements(By.CSS_SELECTOR,
                                                                           "#log-lines .line .function")])  # fmt: skip
        assert apps == [dash.app.name] and functions == ["flaky"], (apps, functions)
        browser.get(f"{server.url}/dashboard/logs?app={dash.app.app_id}")
        assert settled(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#log-lines .line"))) >= 40
        shoot(browser, shots, "logs")


def test_a_live_map_is_followed_to_100_percent_without_reloading_the_page(server, browser, shots):
    log_in(browser, server)
    gate = os.path.join(shared_dir(), "open")
    with dash.app.run(show_logs=False):
        call = dash.gated.spawn_map(range(30), kwargs={"gate": gate})
        browser.get(call.get_dashboard_url())
        assert text_of(browser, "percent") == "0.0%"
        browser.execute_script("window.notReloaded = true")
        Path(gate).touch()
        WebDriverWait(browser, 60, poll_frequency=0.1).until(lambda b: text_of(b, "percent") == "100.0%")
        assert browser.execute_script("return window.notReloaded") is True
        assert text_of(browser, "count-succeeded") == "30 succeeded"


class SlowList:
    """A sized iterable whose items past the tenth come only once ``more`` is set (a list read from a slow
    source): its length is known before its inputs are all in."""

    def __init__(self, n: int, more: threading.Event) -> None:
        self.n, self.more = n, more

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            if i == 10:
                self.more.wait(60)
            yield i


def test_a_map_over_a_list_shows_its_whole_length_while_its_inputs_are_still_coming(server, browser):
    log_in(browser, server)
    gate, more = os.path.join(shared_dir(), "open-slow"), threading.Event()
    with dash.app.run(show_logs=False):
        mapping = threading.Thread(target=lambda: list(dash.gated.map(SlowList(40, more), kwargs={"gate": gate})))
        mapping.start()
        try:
            browser.get(f"{server.url}/dashboard/apps/{dash.app.app_id}")
            # 10 submitted of 40: the row says 0 / 40 (not "0 / 10+", a total that grows as inputs come)
            WebDriverWait(browser, 30).until(lambda b: "0 / 40" in text_of(b, "calls"))
            assert "0 / 40+" not in text_of(browser, "calls")
        finally:
            more.set()
            Path(gate).touch()
            mapping.join(60)


def test_a_call_is_cancelled_and_a_container_stopped_from_their_pages(server, browser):
    log_in(browser, server)
    gate = os.path.join(shared_dir(), "never")
    with dash.app.run(show_logs=False):
        call = dash.gated.spawn_map(range(3), kwargs={"gate": gate})
        browser.get(call.get_dashboard_url())
        settled(lambda: browser.find_element(By.ID, "cancel").click())
        WebDriverWait(browser, 30).until(lambda b: "CANCELLED" in text_of(b, "progress"))
        with pytest.raises(InputCancellation):
            call.get(index=0, timeout=30)

        # and a container of that function stopped from its page
        browser.get(f"{server.url}/dashboard/containers")
        follow(browser, By.XPATH, "//tr[td[text()='gated']]//a", lambda url: "/dashboard/containers/ta-" in url)
        assert browser.find_element(By.TAG_NAME, "h1").text.startswith("ta-")
        settled(lambda: browser.find_element(By.ID, "stop").click())
        WebDriverWait(browser, 30).until(lambda b: "STOPPED" in text_of(b, "container"))
        assert "stopped by the user (exit code 0)" in text_of(browser, "container")  # why, then how it ended


def test_storage_shows_volumes_dicts_queues_and_secret_names_never_values(server, browser, shots):
    log_in(browser, server)
    secret_value = "s3cr3t-dashboard-value"
    created = httpx.post(f"{server.url}/secrets", headers=server.auth,
                         json={"name": "dash-secret", "values": {"API_KEY": secret_value}})  # fmt: skip
    assert created.status_code == 200, created.text
    shoal.Dict.from_name("dash-dict", create_if_missing=True).put("colour", ["teal", 7])
    shoal.Queue.from_name("dash-queue", create_if_missing=True).put({"job": 1})
    volume = shoal.Volume.from_name("dash-volume", create_if_missing=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("hello from the volume\n")
    with volume.batch_upload(force=True) as batch:
        batch.put_file(f.name, "/notes/readme.txt")

    browser.get(f"{server.url}/dashboard/storage")
    page = text_of(browser, "storage")
    assert "dash-secret" in page and "dash-dict" in page and "dash-queue" in page and "dash-volume" in page
    assert secret_value not in browser.page_source
    shoot(browser, shots, "storage")
    follow(browser, By.LINK_TEXT, "dash-dict", lambda url: "/storage/dict/" in url)
    assert "'colour'" in browser.page_source and "['teal', 7]" in text_of(browser, "kv")
    browser.get(f"{server.url}/dashboard/storage")
    follow(browser, By.LINK_TEXT, "dash-queue", lambda url: "/storage/queue/" in url)
    assert "{'job': 1}" in text_of(browser, "kv")
    browser.get(f"{server.url}/dashboard/volumes/dash-volume")
    follow(browser, By.LINK_TEXT, "notes/", lambda url: url.endswith("path=notes"))
    follow(browser, By.LINK_TEXT, "readme.txt", lambda url: "readme.txt" in url)
    assert browser.find_element(By.CSS_SELECTOR, "pre.file").text == "hello from the volume"


def test_without_a_token_only_the_servers_own_host_names_and_same_page_forms_are_served(server):
    # a page asked for under another host name (DNS rebinding) is refused
    assert httpx.get(f"{server.url}/dashboard/apps", headers={"host": "evil.example"}).status_code == 421
    # without the local token (a container shares the loopback): the login page, never a listing
    page = httpx.get(f"{server.url}/dashboard/apps", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/dashboard/login")
    assert httpx.get(f"{server.url}/", follow_redirects=False).headers["location"] == "/dashboard/apps"
    # a printed link logs in once: the session cookie, and the token dropped from the address
    with httpx.Client(base_url=server.url) as browser:
        landed = browser.get(f"/dashboard/apps?token={server.token}", follow_redirects=False)
        assert landed.status_code == 303 and landed.headers["location"] == "/dashboard/apps"
        assert browser.get("/dashboard/apps").status_code == 200
        # an action without the page's form key, or from another site, is refused
        stop = "/dashboard/containers/ta-nothing/stop"
        assert browser.post(stop, data={"form_key": "guess"}).status_code == 403
        assert httpx.post(f"{server.url}{stop}", data={"form_key": "guess"}).status_code == 401
        assert browser.get("/dashboard/calls/fc-unknown").status_code == 404


def test_with_a_token_the_dashboard_asks_for_it_and_checks_it_on_every_request(tmp_path, browser, shots):
    token = "dashboard-test-token"
    srv = ServerProcess(tmp_path / "server", env={"SHOAL_TOKEN": token})
    try:
        page = httpx.get(f"{srv.url}/dashboard/apps", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/dashboard/login")
        assert httpx.post(f"{srv.url}/dashboard/login", data={"token": "wrong"}).status_code == 401

        browser.get(f"{srv.url}/dashboard/storage")
        assert "/dashboard/login" in browser.current_url
        shoot(browser, shots, "login")
        browser.find_element(By.ID, "token").send_keys(token)
        follow(browser, By.ID, "login", lambda url: url.endswith("/dashboard/storage"))
        assert browser.current_url.endswith("/dashboard/storage")
        assert settled(lambda: browser.find_element(By.TAG_NAME, "h1").text) == "Storage"  # (it refreshes itself)
        cookie = browser.get_cookie("shoal_session")
        assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert token not in cookie["value"]
        follow(browser, By.CSS_SELECTOR, "form.logout button", lambda url: url.endswith("/dashboard/login"))
        browser.get(f"{srv.url}/dashboard/apps")
        assert "/dashboard/login" in browser.current_url
    finally:
        srv.stop()
