"""Security: loopback by default, token roles and revocation, no unpickling in the server, secrets kept out of
logs, errors and the API, rate limits with a responsive /health."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import msgpack
import pytest

import shoal
from shoal.exception import AuthError
from tests.apps import basic, reliability
from tests.conftest import ServerProcess, interpreter_pid

SECRET = "sk-live-7f3a9c1e5b"


def test_a_non_loopback_bind_without_a_token_is_refused(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "shoal", "server", "--host", "0.0.0.0", "--port", "0", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "SHOAL_TOKEN"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "token" in result.stderr


@pytest.fixture
def guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """A server with its own (admin) token, and an unpickle audit log."""
    audit = tmp_path / "unpickle-audit.log"
    srv = ServerProcess(tmp_path / "state", env={"SHOAL_TOKEN": "admin-secret", "SHOAL_AUDIT_UNPICKLE": str(audit)})
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    yield srv, audit
    srv.stop()


def call(url: str, method: str, path: str, token: str | None, body: dict | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"{url}{path}", json=body, headers=headers)


def test_every_route_but_health_needs_a_token(guarded):
    srv, _ = guarded
    assert call(srv.url, "GET", "/health", None).status_code == 200
    for method, path in [("GET", "/apps"), ("POST", "/apps"), ("GET", "/calls/fc-x"), ("GET", "/containers")]:
        assert call(srv.url, method, path, None).status_code == 401
        assert call(srv.url, method, path, "wrong").status_code == 401


def test_issued_tokens_work_until_revoked_and_cannot_issue_tokens(guarded, monkeypatch: pytest.MonkeyPatch):
    srv, _ = guarded
    assert call(srv.url, "POST", "/tokens", None, {"name": "ci"}).status_code == 401
    issued = call(srv.url, "POST", "/tokens", "admin-secret", {"name": "ci"}).json()["token"]
    assert call(srv.url, "GET", "/apps", issued).status_code == 200
    assert call(srv.url, "POST", "/tokens", issued, {"name": "other"}).status_code == 401  # admin only
    monkeypatch.setenv("SHOAL_TOKEN", issued)
    with basic.app.run(show_logs=False):
        assert basic.square.remote(4) == 16
    assert call(srv.url, "POST", "/tokens/ci/revoke", "admin-secret").status_code == 200
    assert call(srv.url, "GET", "/apps", issued).status_code == 401
    with pytest.raises(AuthError, match="revoked"):
        shoal.FunctionCall("fc-00000000000000000000", srv.url).get(timeout=0)


def test_a_container_token_can_call_functions_but_not_deploy(guarded, monkeypatch: pytest.MonkeyPatch):
    srv, _ = guarded
    monkeypatch.setenv("SHOAL_TOKEN", "admin-secret")
    with basic.app.run(show_logs=False):
        info = basic.whoami.remote(0)  # a container: read its token from its environment
        environ = Path(f"/proc/{interpreter_pid(info['pid'])}/environ").read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
        container_token = env["SHOAL_CONTAINER_TOKEN"]
        assert container_token != "admin-secret"
        assert (
            call(srv.url, "GET", f"/calls/{shoal.FunctionCall('fc-x').object_id}", container_token).status_code == 404
        )
        for method, path, body in [("POST", "/apps", {"name": "x"}), ("POST", "/deploy", {"name": "x"}),
                                   ("GET", "/apps", None), ("POST", "/tokens", {"name": "x"})]:  # fmt: skip
            assert call(srv.url, method, path, container_token, body).status_code in (401, 403), path
        assert basic.nested_sum.remote(4) == 14  # nested calls from a container use its token


def test_secrets_stay_out_of_logs_errors_api_and_stored_records(guarded, monkeypatch: pytest.MonkeyPatch):
    srv, audit = guarded
    monkeypatch.setenv("SHOAL_TOKEN", "admin-secret")
    seen: list[str] = []
    with reliability.app.run(show_logs=False):
        with pytest.raises(shoal.exception.ExecutionError) as info:
            reliability.leaky.remote(1)
        seen.append(str(info.value))
        seen.append(str(info.value.__cause__))
        app_id = reliability.app.app_id
        for method, path in [("GET", "/apps"), ("GET", f"/apps/{app_id}/functions"), ("GET", "/containers?all=1"),
                             ("GET", "/secrets"), ("GET", f"/apps/{app_id}/functions/leaky")]:  # fmt: skip
            seen.append(call(srv.url, method, path, "admin-secret").text)
        logs = httpx.post(f"{srv.url}/apps/{app_id}/logs", json={"since": 0},
                          headers={"authorization": "Bearer admin-secret"})  # fmt: skip
        seen.append(logs.content.decode(errors="replace"))
    assert "***" in seen[0]  # the error still says what went wrong
    assert not [s for s in seen if SECRET in s]
    stored = [p for p in (srv.state_dir).rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if SECRET.encode() in p.read_bytes()]


def test_a_secret_written_in_pieces_or_below_python_stays_out_of_logs_and_errors(guarded, monkeypatch):
    srv, _ = guarded
    monkeypatch.setenv("SHOAL_TOKEN", "admin-secret")
    with reliability.app.run(show_logs=False):
        assert reliability.leaky_in_pieces.remote(0) == 0
        with pytest.raises(shoal.exception.ExecutionError) as crash:
            reliability.leaky_in_pieces.remote(1)  # writes it to fd 1, then dies: its raw tail is in the error
        app_id = reliability.app.app_id
        logs = httpx.post(f"{srv.url}/apps/{app_id}/logs", json={"since": 0},
                          headers={"authorization": "Bearer admin-secret"})  # fmt: skip
        calls = call(srv.url, "GET", f"/apps/{app_id}/functions/leaky_in_pieces", "admin-secret").text
    text = logs.content.decode(errors="replace")
    assert "*** was the key" in text and "raw ***" in str(crash.value)
    assert SECRET not in text and SECRET not in str(crash.value) and SECRET not in calls


def test_a_burst_of_output_past_the_log_budget_is_cut_with_a_note_and_the_input_succeeds(tmp_path: Path, monkeypatch):
    srv = ServerProcess(tmp_path / "state", env={"SHOAL_LOG_BUDGET_MIB": "4"})
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    try:
        with reliability.app.run(show_logs=False):
            call = reliability.burst.spawn(12)  # 12 MiB of lines
            slowest = 0.0
            while True:  # /health answers promptly all along
                started = time.monotonic()
                assert httpx.get(f"{srv.url}/health", timeout=10).status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                try:
                    assert call.get(timeout=0.2) == 12
                    break
                except TimeoutError:
                    continue
            app_id = reliability.app.app_id
            logs: list[str] = []
            since, deadline = 0, time.monotonic() + 60
            while not any("output truncated" in x for x in logs[-3:]) and time.monotonic() < deadline:
                page = httpx.post(f"{srv.url}/apps/{app_id}/logs", json={"since": since, "wait": 5},
                                  headers=srv.auth, timeout=30)  # fmt: skip
                rows = msgpack.unpackb(page.content)["logs"]  # (seq, stream, data, container): shipped after the result
                logs += [row[2] for row in rows]
                since = rows[-1][0] if rows else since
        text = "".join(logs)
        assert "output truncated" in text and "SHOAL_LOG_BUDGET_MIB" in text
        # everything below the budget (4 MiB of 1 KiB lines, newlines included), nothing past it
        assert text.count("x") == (4 << 20) // 1024 * 1023
        assert slowest < 2.0, slowest
    finally:
        srv.stop()


def test_the_server_never_unpickles_user_payloads(guarded, monkeypatch: pytest.MonkeyPatch):
    srv, audit = guarded
    monkeypatch.setenv("SHOAL_TOKEN", "admin-secret")
    with basic.app.run(show_logs=False):
        assert list(basic.square.map(range(50))) == [x * x for x in range(50)]
        with pytest.raises(basic.CustomError):
            basic.fail_on_odd.remote(1)
        assert basic.echo_bytes.remote(b"y" * (3 * 1024 * 1024)) == 3 * 1024 * 1024
    assert not audit.exists() or audit.read_text() == ""


def test_rate_limits_answer_429_and_health_stays_responsive(tmp_path: Path):
    srv = ServerProcess(tmp_path / "limited", env={"SHOAL_RATE_LIMIT": "20"})
    try:
        statuses: list[int] = []
        retry_after: list[str] = []

        def flood() -> None:
            with httpx.Client(headers=srv.auth) as client:
                for _ in range(150):
                    resp = client.get(f"{srv.url}/apps")
                    statuses.append(resp.status_code)
                    if resp.status_code == 429:
                        retry_after.append(resp.headers["retry-after"])

        flooders = [threading.Thread(target=flood) for _ in range(3)]
        for t in flooders:
            t.start()
        health_latencies = []
        with httpx.Client() as client:
            for _ in range(20):
                t0 = time.monotonic()
                assert client.get(f"{srv.url}/health").status_code == 200
                health_latencies.append(time.monotonic() - t0)
        for t in flooders:
            t.join()
        assert statuses.count(429) > 100
        assert statuses.count(200) >= 20
        assert retry_after and float(retry_after[0]) > 0
        assert max(health_latencies) < 1.0
    finally:
        srv.stop()


def test_the_api_refuses_a_huge_request_head_with_431_and_keeps_answering(server):
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(server.url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(b"GET /apps HTTP/1.1\r\nhost: h\r\nx-flood: ")
        try:
            for _ in range(64):  # 4 MiB of one header line, with no credentials
                sock.sendall(b"a" * 65536)
        except OSError:
            pass  # the server may close before all of it is sent
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
