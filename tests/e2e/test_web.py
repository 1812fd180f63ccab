"""Web endpoints through the real gateway: every decorator, FastAPI's validation, streaming both ways, timeouts,
proxy auth, and the seed's pattern (POST 10,000 items to a kickoff endpoint, poll a status endpoint by job id)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

import shoal
from tests.apps import web
from tests.conftest import REPO


def test_fastapi_endpoints_take_query_parameters_and_json_bodies_as_fastapi_does(server):
    with web.app.run(show_logs=False):
        hello, total = web.hello.get_web_url(), web.total.get_web_url()
        assert hello and hello.startswith("http://127.0.0.1:") and hello != total
        assert httpx.get(hello).json() == {"hello": "world"}
        assert httpx.get(hello, params={"name": "shoal", "times": 2}).json() == {"hello": "shoal shoal"}
        assert httpx.get(hello, params={"times": "many"}).status_code == 422  # FastAPI's validation
        assert httpx.post(hello).status_code == 405  # GET only
        assert httpx.post(total, json={"values": [1, 2, 3]}).json() == {"total": 6}
        assert httpx.post(total, content=b"not json", headers={"content-type": "application/json"}).status_code == 422
        assert httpx.get(total + "/docs").status_code == 200  # docs=True
        assert httpx.get(hello + "/docs").status_code == 404


def test_an_asgi_app_sees_its_own_root_and_streams_both_ways(server):
    with web.app.run(show_logs=False):
        url = web.site.get_web_url()
        assert url is not None
        page = httpx.get(url + "/")
        assert page.status_code == 200 and 'href="/ticks"' in page.text and page.text.endswith("seen at /")
        # a streamed answer arrives chunk by chunk, not all at the end
        arrivals = []
        with httpx.stream("GET", url + "/ticks") as response:
            for line in response.iter_lines():
                arrivals.append((time.monotonic(), line))
        assert [line for _, line in arrivals] == ["tick 0", "tick 1", "tick 2"]
        assert arrivals[-1][0] - arrivals[0][0] > 0.6
        # an upload streams in (8 MiB in 64 KiB chunks) and the app counts what it got
        chunks = (b"x" * 65536 for _ in range(128))
        assert httpx.post(url + "/upload", content=chunks).text == str(128 * 65536)


def test_asgi_lifespan_runs_per_container_and_a_web_server_of_its_own_is_proxied(server):
    with web.app.run(show_logs=False):
        assert httpx.get(web.with_lifespan.get_web_url() or "", timeout=60).json() == {"started": "at container start"}
        listing = httpx.get(web.own_server.get_web_url() or "", timeout=60)
        assert listing.status_code == 200 and "Directory listing for /" in listing.text


def test_a_websocket_of_an_asgi_app_echoes_through_the_gateway(server):
    from websockets.sync.client import connect

    with web.app.run(show_logs=False):
        url = (web.site.get_web_url() or "").replace("http://", "ws://") + "/echo"
        with connect(url, open_timeout=60) as ws:
            for word in ("one", "two"):
                ws.send(word)
                assert ws.recv(timeout=30) == f"echo: {word}"


def test_an_endpoint_whose_app_cannot_start_answers_503_with_the_error_instead_of_hanging(server):
    with web.app.run(show_logs=False):
        started = time.monotonic()
        answer = httpx.get(web.broken.get_web_url() or "", timeout=120)
        assert answer.status_code == 503 and "this app cannot be built" in answer.text
        assert time.monotonic() - started < 30  # three quick failed starts, not the startup timeout


def test_a_wsgi_app_is_served_under_its_label_and_a_redeploy_keeps_the_url(server):
    first = web.app.deploy("tests-web-deployed")
    url = first.web_urls["legacy"]
    assert httpx.get(url + "/path", params={"q": "1"}).text == "wsgi /path?q=1"
    second = web.app.deploy("tests-web-deployed")  # a redeploy: new version, same URL
    assert second.version == first.version + 1 and second.web_urls["legacy"] == url
    assert shoal.Function.from_name("tests-web-deployed", "legacy").get_web_url() == url
    assert httpx.get(url + "/again").text == "wsgi /again?"
    httpx.post(f"{server.url}/apps/tests-web-deployed/stop", headers=server.auth, json={}).raise_for_status()
    assert httpx.get(url + "/").status_code == 404  # a stopped app's endpoint answers, saying so


def test_a_request_past_the_timeout_gets_504_and_proxy_auth_needs_a_token(server):
    with web.app.run(show_logs=False):
        slow = httpx.get(web.slow.get_web_url() or "", timeout=30)
        assert slow.status_code == 504 and "timeout=1s" in slow.text
        guarded = web.guarded.get_web_url() or ""
        assert httpx.get(guarded).status_code == 401
        assert httpx.get(guarded, headers={"authorization": f"Bearer {server.token}"}).json() == "secret handshake"


def test_a_container_killed_mid_request_gives_502_to_that_request_and_the_next_gets_a_fresh_one(server):
    with web.app.run(show_logs=False):
        url = web.sleepy.get_web_url() or ""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.get, url, params={"seconds": 30}, timeout=60)
            pids = _wait_for(lambda: server.busy_pids_of("sleepy"))  # the request is in the container
            os.kill(pids[0], signal.SIGKILL)
            killed = pending.result()
        assert killed.status_code == 502 and "failed mid-request" in killed.text
        assert httpx.get(url, params={"seconds": 0}, timeout=60).text == '"awake"'


def _wait_for(probe, timeout: float = 30.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def test_a_request_is_a_call_and_what_its_handler_calls_hangs_under_it_in_the_call_graph(server):
    with web.app.run(show_logs=False):
        answer = httpx.get(web.fan_out.get_web_url() or "", timeout=60).json()
        assert answer["value"] == 42 and answer["call"].startswith("fc-")
        (root,) = shoal.FunctionCall.from_id(answer["call"]).get_call_graph()
        assert (root.function_call_id, root.function_name, root.status) == (answer["call"], "fan_out", "SUCCEEDED")
        assert [child.function_call_id for child in root.children] == [answer["child"]]


def test_kickoff_a_10000_item_batch_then_poll_its_job_id_until_the_result_arrives(server):
    items = [{"x": i} for i in range(10_000)]
    with web.app.run(show_logs=False):
        job_id = httpx.post(web.kickoff.get_web_url() or "", json=items, timeout=60).json()["job_id"]
        assert job_id.startswith("fc-")
        deadline = time.monotonic() + 120
        while True:
            answer = httpx.get(web.status.get_web_url() or "", params={"job_id": job_id}, timeout=30).json()
            if answer["status"] == "done" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer == {"status": "done", "result": 2 * sum(range(10_000))}


SERVED = """
import shoal

app = shoal.App("tests-served")


@app.function()
@shoal.fastapi_endpoint()
def word() -> str:
    return "{word}"
"""


def test_shoal_serve_reloads_on_a_source_change_and_ctrl_c_stops_the_app(server, tmp_path):
    # Given `shoal serve` of an app with one endpoint
    source = tmp_path / "served.py"
    source.write_text(SERVED.format(word="first"))
    proc = subprocess.Popen([sys.executable, "-m", "shoal", "serve", str(source)], cwd=REPO, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)  # type: ignore[union-attr]
    reader.start()

    def line_with(text: str) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                if text in (line := lines.get(timeout=1)):
                    return line
        raise AssertionError(f"no line with {text!r}")

    try:
        url = line_with("web endpoint word => ").split("=> ")[1].strip()
        assert httpx.get(url, timeout=60).json() == "first"
        # When its source changes, Then the same URL serves the new code
        source.write_text(SERVED.format(word="second"))
        line_with("Reloaded (served.py)")
        assert httpx.get(url, timeout=60).json() == "second"
        # When Ctrl-C, Then the app stops (its endpoint says no app serves it)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
        assert httpx.get(url, timeout=30).status_code == 404
    finally:
        proc.kill()
        proc.wait()
        reader.join(5)
        proc.stderr.close()  # type: ignore[union-attr]


def test_web_decorators_check_their_arguments():
    with pytest.raises(shoal.exception.InvalidError, match="label"):
        shoal.fastapi_endpoint(label="Not A Label")
    with pytest.raises(shoal.exception.InvalidError, match="port"):
        shoal.web_server(0)
    with pytest.warns(DeprecationWarning, match="fastapi_endpoint"):
        shoal.web_endpoint()


def test_a_web_method_of_a_class_serves_after_its_enter_hook_ran_once_per_container(server):
    with web.app.run(show_logs=False):
        url = web.Greeter().greet.get_web_url() or ""
        assert url.startswith("http://127.0.0.1:") and url != web.hello.get_web_url()
        first = httpx.get(url, params={"name": "Ada"}, timeout=60).json()
        second = httpx.get(url, params={"name": "Bob"}, timeout=60).json()
        assert first["greeting"] == "hello, Ada" and second["greeting"] == "hello, Bob"
        assert first["entered"] == second["entered"] == 1 and first["pid"] == second["pid"]
        assert web.Greeter().shout.remote("hi") == "HI"  # its ordinary methods still work


def test_an_html_endpoint_renders_and_its_form_round_trips_in_a_real_headless_browser(server, browser):
    with web.app.run(show_logs=False):
        url = web.guestbook.get_web_url() or ""
        browser.get(url + "/")
        assert browser.find_element("tag name", "h1").text == "Guestbook"
        browser.find_element("id", "name").send_keys("Ada")
        browser.find_element("id", "sign").click()
        assert browser.find_element("id", "thanks").text == "Thanks for signing, Ada!"
        assert browser.current_url.startswith(url + "/sign?name=Ada")  # the app's absolute links work from its root
        browser.find_element("id", "back").click()
        assert browser.current_url == url + "/"


def test_ctrl_c_of_shoal_serve_on_an_embedded_server_exits_within_two_seconds(tmp_path):  # noqa: ANN001
    # Given `shoal serve` on an embedded server (a fresh home, no server anywhere), in its own terminal session
    source = tmp_path / "served.py"
    source.write_text(SERVED.format(word="first"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "SHOAL_HOME": str(tmp_path / "home"), "SHOAL_SERVER_URL": ""}
    proc = subprocess.Popen([sys.executable, "-m", "shoal", "serve", str(source)], cwd=REPO, text=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        while "Serving" not in (line := proc.stdout.readline()):
            assert line, "shoal serve exited before it served"
        # When the terminal's Ctrl-C reaches the whole process group (the embedded server included)
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        # Then it exits within two seconds (issue 25, items 3 and 16: it took 61 s)
        assert proc.wait(30) == 130
        assert time.monotonic() - started < 2.0
    finally:
        proc.kill()
        proc.communicate()
