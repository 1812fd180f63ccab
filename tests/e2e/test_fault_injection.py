"""Fault injection with real processes: zombies, native loops, poison inputs, bad payloads, bad requests."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import msgpack
import psutil
import pytest

import shoal
from shoal import serialization
from shoal.exception import DeserializationError, ExecutionError, FunctionTimeoutError, RequestSizeError
from shoal.protocol import payloads
from tests.apps import reliability
from tests.conftest import host_pids, interpreter_pid, shared_dir


@pytest.fixture(scope="module", autouse=True)
def running(server):  # noqa: ANN001, ANN201
    with reliability.app.run(show_logs=False):
        yield


def wait_for_container(marker: Path, exclude: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    deadline = time.monotonic() + 60
    while True:  # the container writes its id when the input starts; bounded
        ids = {n.split("-", 1)[1] for n in os.listdir(marker)} - set(exclude)
        if ids:
            return ids.pop()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def container_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_a_zombie_containers_late_result_is_rejected():
    # Given an input running in container A
    marker = Path(shared_dir())
    call = reliability.slow_pid.spawn(str(marker), 2.0)
    zombie = wait_for_container(marker)
    zombie_pid = interpreter_pid(zombie)
    env = container_env(zombie_pid)
    # When A freezes past its heartbeat timeout, the input is re-run elsewhere and completes
    os.kill(zombie_pid, signal.SIGSTOP)
    assert call.get(timeout=60) != zombie
    # Then A's late report, sent exactly as A would send it, is rejected as a stale attempt
    late = [call.object_id, 0, 1, "SUCCESS", payloads.inline_payload(serialization.dumps(-1))]
    resp = httpx.post(
        f"{env['SHOAL_SERVER_URL']}/containers/{env['SHOAL_CONTAINER_ID']}/exchange",
        content=msgpack.packb({"outputs": [late], "want": 0}),
        headers={"authorization": f"Bearer {env['SHOAL_CONTAINER_TOKEN']}", "content-type": "application/msgpack"},
    )
    assert resp.status_code == 200
    assert msgpack.unpackb(resp.content)["accepted"] == 0
    assert call.get(timeout=5) != -1  # the caller sees the one real result
    assert shoal.FunctionCall.from_id(call.object_id).num_inputs() == 1


@pytest.mark.parametrize("function", [reliability.python_loop, reliability.native_loop], ids=["python", "native"])
def test_infinite_loops_time_out_on_every_attempt_and_leave_no_orphans(function: shoal.Function):
    marker = Path(shared_dir())
    started = time.monotonic()
    with pytest.raises(FunctionTimeoutError, match="timed out after 2s"):
        function.remote(str(marker))
    elapsed = time.monotonic() - started
    containers = {n.split("-", 1)[1] for n in os.listdir(marker)}
    assert len(containers) == 4  # timeout=2, retries=3: four attempts, each in its own container
    assert 7.5 < elapsed < 60, elapsed
    procs = [psutil.Process(p) for p in host_pids(containers) if psutil.pid_exists(p)]
    _, alive = psutil.wait_procs(procs, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_poison_inputs_fail_alone_after_their_retries():
    out = list(reliability.poison.map(range(1000), return_exceptions=True))
    good = [x for i, x in enumerate(out) if i not in (100, 200, 300)]
    assert good == [i for i in range(1000) if i not in (100, 200, 300)]
    assert isinstance(out[100], ExecutionError) and "SIGSEGV" in str(out[100])
    assert isinstance(out[200], ExecutionError) and "exit code 1" in str(out[200])
    assert isinstance(out[300], MemoryError)


def test_a_payload_that_cannot_be_unpickled_in_the_container_is_a_clear_error():
    with pytest.raises(DeserializationError, match="this payload cannot be rebuilt here"):
        reliability.identity.remote(reliability.LoadsBadly())


def test_payloads_over_the_maximum_are_refused(monkeypatch: pytest.MonkeyPatch, server):
    monkeypatch.setenv("SHOAL_MAX_PAYLOAD_BYTES", str(1024 * 1024))
    with pytest.raises(RequestSizeError, match="over the limit"):
        reliability.identity.remote(b"x" * (2 * 1024 * 1024))
    # the server refuses oversized bodies on its own too (its limit is 512 MiB + 1 MiB), before reading them
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(b"POST /apps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {server.token}\r\n".encode()
                     + b"Content-Length: 629145600\r\n\r\n{}")  # fmt: skip
        conn.settimeout(10)
        reply = b""
        while b"RequestSizeError" not in reply and (chunk := conn.recv(65536)):
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413")
    assert "RequestSizeError" in reply


def test_malformed_requests_and_unknown_ids_get_4xx_never_5xx(server):
    cases = [
        ("POST", "/apps", b"{not json", {"content-type": "application/json"}, 400),
        ("POST", "/apps", b"[1, 2]", {"content-type": "application/json"}, 400),
        ("POST", "/apps", b'{"name": 5}', {"content-type": "application/json"}, 400),
        ("POST", "/calls/fc-nope/inputs", msgpack.packb({"start": 0, "inputs": [b"x"]}),
         {"content-type": "application/msgpack"}, 404),
        ("GET", "/calls/fc-nope", b"", {}, 404),
        ("POST", "/calls/fc-nope/outputs", b"{}", {"content-type": "application/json"}, 404),
        ("POST", "/functions/fu-nope/calls", b'{"kind": "map"}', {"content-type": "application/json"}, 404),
        ("GET", "/blobs/not-a-hash", b"", {}, 404),
        ("PUT", "/blobs/" + "0" * 64, b"content that does not hash to zeros", {}, 400),
        ("POST", "/apps/ap-nope/stop", b"{}", {"content-type": "application/json"}, 404),
        ("POST", "/containers/ta-nope/exchange", b"{}", {}, 401),
    ]  # fmt: skip
    for method, path, body, headers, expected in cases:
        resp = httpx.request(method, f"{server.url}{path}", content=body, headers={**server.auth, **headers})
        assert resp.status_code == expected, (path, resp.status_code, resp.text)
        assert resp.json()["error"]["message"]


def test_a_repeated_input_batch_does_not_duplicate_inputs(server):
    from shoal._sync import run_sync
    from shoal.client import client_for

    client = client_for(server.url)
    fid = reliability.identity.object_id
    call_id = run_sync(client.request("POST", f"/functions/{fid}/calls", {"kind": "map"}))["call_id"]
    inputs = [payloads.inline_payload(serialization.dumps(((i,), {}))) for i in range(5)]
    body = {"start": 0, "inputs": inputs, "close": True}
    first = run_sync(client.request("POST", f"/calls/{call_id}/inputs", body, packed=True))
    again = run_sync(client.request("POST", f"/calls/{call_id}/inputs", body, packed=True))  # a client retry
    assert (first["added"], again["added"]) == (5, 0)
    assert list(shoal.FunctionCall(call_id, server.url).iter()) == [0, 1, 2, 3, 4]
