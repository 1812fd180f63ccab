"""One standing server per SHOAL_HOME, local credentials, fast failures (issue 11, items 11, 13 and 14)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.apps import probes
from tests.conftest import REPO, ServerProcess

SHOAL = [sys.executable, "-m", "shoal"]


def shoal_in(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "SHOAL_HOME": str(home), "PYTHONPATH": str(REPO), **(env or {})}
    full.pop("SHOAL_SERVER_URL", None)
    full.update(env or {})
    return subprocess.run([*SHOAL, *args], cwd=REPO, env=full, capture_output=True, text=True, timeout=120)


def test_each_home_has_its_own_standing_server_and_never_joins_another():
    home_a, home_b = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    try:
        # Given home A's standing server
        started = shoal_in(home_a, "server", "start")
        assert started.returncode == 0, started.stderr
        # When home B asks: it has none, and starting one gives B its own (7811 may be A's: another port then)
        status_b = shoal_in(home_b, "server", "status")
        assert status_b.returncode == 1 and str(home_b) in status_b.stdout
        assert shoal_in(home_b, "app", "list").returncode != 0  # no server of B's to list from
        assert shoal_in(home_b, "server", "start").returncode == 0
        url_a = shoal_in(home_a, "server", "status").stdout.split()[2]
        url_b = shoal_in(home_b, "server", "status").stdout.split()[2]
        # Then the two homes use two servers, and each stops its own
        assert url_a.startswith("http://127.0.0.1:") and url_b.startswith("http://127.0.0.1:") and url_a != url_b
        assert shoal_in(home_b, "server", "stop").returncode == 0
        assert shoal_in(home_b, "server", "status").returncode == 1
        assert shoal_in(home_a, "server", "status").returncode == 0
    finally:
        shoal_in(home_a, "server", "stop")
        shoal_in(home_b, "server", "stop")


def test_server_start_on_a_chosen_port_is_found_by_status_and_stop():
    home = Path(tempfile.mkdtemp())
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        assert shoal_in(home, "server", "start", "--port", str(port)).returncode == 0
        status = shoal_in(home, "server", "status")
        assert status.returncode == 0 and f"127.0.0.1:{port}" in status.stdout
        # and it says what its backend can give containers
        assert f"backend: LocalBackend (sandbox: {'yes' if shutil.which('bwrap') else 'no'}" in status.stdout
        assert f"CPUs: {os.cpu_count()}" in status.stdout
        started = time.monotonic()
        stopped = shoal_in(home, "server", "stop")
        assert stopped.returncode == 0 and "Stopped" in stopped.stdout
        assert time.monotonic() - started < 8  # a graceful stop, not the SIGKILL fallback
    finally:
        shoal_in(home, "server", "stop")


def test_a_token_given_to_server_start_is_on_no_command_line():
    home = Path(tempfile.mkdtemp())
    token = "never-on-a-command-line-7d1c"
    try:
        started = shoal_in(home, "server", "start", "--token", token, "--port", "0")
        assert started.returncode == 0, started.stderr
        pid = int(started.stdout.split("(pid ")[1].split(",")[0])
        assert token not in " ".join(psutil.Process(pid).cmdline())
        status = shoal_in(home, "server", "status", env={"SHOAL_TOKEN": token})
        assert status.returncode == 0  # the server does require it
    finally:
        shoal_in(home, "server", "stop", env={"SHOAL_TOKEN": token})


def test_an_unreachable_server_url_fails_within_five_seconds_with_a_clear_message():
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    started = time.monotonic()
    result = shoal_in(Path(tempfile.mkdtemp()), "app", "list", env={"SHOAL_SERVER_URL": f"http://127.0.0.1:{port}"})
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "Cannot reach the Shoal server" in result.stderr and "Traceback" not in result.stderr
    assert elapsed < 8, elapsed  # ~5 s of retries plus an interpreter start


def test_every_run_says_which_server_it_uses_in_its_first_line(server):
    result = subprocess.run(
        [*SHOAL, "run", "tests/apps/cli_app.py::double", "--x", "2"], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == f"✓ Using SHOAL_SERVER_URL at {server.url}"
    # and where to watch it: the app's page on the dashboard
    view = re.search(r"View run at (\S+/dashboard/apps/(ap-\w+)\S*)", result.stderr)
    assert view and view.group(1).startswith(server.url), result.stderr
    with httpx.Client(follow_redirects=True) as browser:  # the link logs the browser in (a server without a token)
        page = browser.get(view.group(1))
    assert page.status_code == 200 and view.group(2) in page.text


def test_a_run_and_a_deploy_say_how_long_their_servers_last():
    home = Path(tempfile.mkdtemp())
    try:
        ran = shoal_in(home, "run", "tests/apps/cli_app.py::double", "--x", "2")  # an embedded server: the run's
        assert ran.returncode == 0, ran.stderr
        assert "the link works while this run lasts" in ran.stderr and "shoal server start" in ran.stderr
        deployed = shoal_in(home, "deploy", "tests/apps/cli_app.py")  # a background server, started for it
        assert deployed.returncode == 0, deployed.stderr
        assert "Started this home's background Shoal server" in deployed.stderr and "shoal server stop" in (
            deployed.stderr
        )
        again = shoal_in(home, "deploy", "tests/apps/cli_app.py")  # said once: now it runs
        assert again.returncode == 0 and "Started this home" not in again.stderr
        bare = shoal_in(Path(tempfile.mkdtemp()), "run", "tests/apps/cli_app.py::double", "--x", "2",
                        env={"SHOAL_SANDBOX": "off"})  # fmt: skip
        assert bare.returncode == 0, bare.stderr
        assert bare.stderr.count("containers run unsandboxed") == 1  # in the caller's terminal, once
        assert "unsandboxed" not in ran.stderr  # a server with its sandbox says nothing
    finally:
        shoal_in(home, "server", "stop")


def test_without_a_server_token_only_this_homes_clients_get_in_and_nobody_mints_tokens(server):
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/apps").status_code == 401  # loopback alone is not enough
        assert http.get("/apps", headers=server.auth).status_code == 200  # the home's local token
        minted = http.post("/tokens", json={"name": "x"}, headers=server.auth)
        assert minted.status_code == 403 and "--token" in minted.json()["error"]["message"]
        assert http.post("/tokens", json={"name": "x"}).status_code == 401


def test_issued_tokens_stop_working_when_the_server_token_changes(tmp_path: Path):
    state = tmp_path / "state"
    srv = ServerProcess(state, env={"SHOAL_TOKEN": "first-admin"})
    try:
        issued = httpx.post(f"{srv.url}/tokens", json={"name": "ci"}, headers={"authorization": "Bearer first-admin"})
        token = issued.json()["token"]
        assert httpx.get(f"{srv.url}/apps", headers={"authorization": f"Bearer {token}"}).status_code == 200
    finally:
        srv.stop()
    again = ServerProcess(state, env={"SHOAL_TOKEN": "second-admin"})
    try:
        assert httpx.get(f"{again.url}/apps", headers={"authorization": f"Bearer {token}"}).status_code == 401
    finally:
        again.stop()


def test_a_container_cannot_deploy_create_apps_or_read_secrets_on_a_server_without_a_token(server, sandbox):
    with probes.app.run(show_logs=False):
        answers = probes.try_admin_routes.remote()
    for path, statuses in answers.items():
        assert all(s in (401, 403) for s in statuses), (path, statuses)


@pytest.mark.parametrize("bad", ["fc-../../etc", "fc-", "nope"])
def test_call_get_with_a_malformed_id_says_so_in_one_line(server, bad: str):
    result = subprocess.run([*SHOAL, "call", "get", bad], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "is not a function call id" in result.stderr and "HTTP 404" not in result.stderr


EMBEDDED_SPAWNER = """
import sys, time
from tests.apps import basic
with basic.app.run(show_logs=False):
    call = basic.square.spawn(12)
    assert call.get(timeout=60) == 144
    print(call.object_id, flush=True)
    sys.stdin.read()  # keep the embedded server up until the test closes stdin
"""


def test_call_get_finds_a_call_of_another_processs_embedded_server():
    home = Path(tempfile.mkdtemp())
    env = {k: v for k, v in os.environ.items() if k != "SHOAL_SERVER_URL"}
    env.update(SHOAL_HOME=str(home), PYTHONPATH=str(REPO))
    spawner = subprocess.Popen([sys.executable, "-c", EMBEDDED_SPAWNER], cwd=REPO, env=env, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert spawner.stdout is not None
        call_id = spawner.stdout.readline().strip()
        assert call_id.startswith("fc-"), spawner.stderr.read() if spawner.stderr else ""
        got = shoal_in(home, "call", "get", call_id)
        assert got.returncode == 0 and got.stdout.strip() == "144", got.stderr
    finally:
        spawner.communicate("", timeout=60)


def test_a_deploy_cut_off_midway_shows_as_deploying_and_a_cut_off_redeploy_keeps_the_last_version(server):
    api = httpx.Client(base_url=server.url, headers=server.auth, timeout=30)
    with api:
        # Given a first deploy whose client died after it began (SIGKILL between begin and finish)
        app_id = api.post("/deploy", json={"name": "tests-cut-off"}).json()["app_id"]
        listed = {a["app_id"]: a for a in api.get("/apps").json()["apps"]}[app_id]
        assert (listed["state"], listed["version"]) == ("DEPLOYING", 0)
        assert "deploy it again" in api.get(f"/apps/{app_id}/functions/f").json()["error"]["message"]
        # When the next deploy finishes (version 2), then a redeploy is cut off after it began
        assert api.post("/deploy", json={"name": "tests-cut-off"}).json()["version"] == 2
        api.post(f"/apps/{app_id}/deployed", json={"version": 2, "functions": {}})
        assert api.post("/deploy", json={"name": "tests-cut-off"}).json()["version"] == 3
        # Then the app shows the version that finished, as its history does
        listed = {a["app_id"]: a for a in api.get("/apps").json()["apps"]}[app_id]
        assert (listed["state"], listed["version"]) == ("RUNNING", 2)
        assert [h["version"] for h in api.get(f"/apps/{app_id}/history").json()["history"]] == [2]
        api.post(f"/apps/{app_id}/stop", json={})
