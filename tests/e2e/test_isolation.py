"""Isolation between apps (issue 24): code in one app's container reaches nothing of another app's containers,
secrets or volumes, from inside a real (sandboxed) container."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import httpx
import psutil

import shoal
from tests.apps import isolation
from tests.conftest import ServerProcess, shared_dir


def _containers_of(srv: ServerProcess, function: str) -> list[str]:
    rows = httpx.get(f"{srv.url}/containers?all=1", headers=srv.auth, timeout=30).json()["containers"]
    return [r["container_id"] for r in rows if r["function"] == function]


def test_a_container_token_admits_its_own_container_only(server: ServerProcess, sandbox):
    # Given a container of another app that ran with a secret
    with isolation.victim.run(show_logs=False):
        assert isolation.victim_fn.remote(1) == 2
    victim_id = _containers_of(server, "victim_fn")[-1]
    # When the attacker's code asks for the victim's spec, lease, beat and start, with its own token or a forged one
    with isolation.attacker.run(show_logs=False):
        seen = isolation.reach_other_container.remote(victim_id)
    # Then it gets its own spec and nothing of the victim's
    assert seen.pop("own spec") == 200
    assert seen == {"spec": 403, "exchange": 403, "heartbeat": 403, "started": 403, "forged token": 401}


def test_a_container_reaches_only_the_volumes_its_function_mounts(server: ServerProcess, sandbox, tmp_path: Path):
    # Given another app's volume with a file in it
    volume = shoal.Volume.from_name("tests-victim-volume", create_if_missing=True)
    source = tmp_path / "data.txt"
    source.write_bytes(b"private")
    with volume.batch_upload(force=True) as upload:
        upload.put_file(source, "data.txt")
    # When the attacker's code (which mounts no volume) reads, lists, writes and removes it
    with isolation.attacker.run(show_logs=False):
        seen = isolation.reach_volume.remote("tests-victim-volume")
    # Then every route refuses, and the volume is whole
    assert seen == {"ls": 403, "read": 403, "write": 403, "rm": 403}
    assert b"".join(volume.read_file("data.txt")) == b"private"
    assert [e.path for e in volume.listdir("/")] == ["data.txt"]


def test_a_container_has_no_capabilities_no_host_processes_and_a_bounded_tmp(server: ServerProcess, sandbox):
    # When a container looks at itself and the host's processes (the server runs as this test's user)
    with isolation.attacker.run(show_logs=False):
        seen = isolation.reach_host.remote(server.proc.pid)
    # Then it is an unprivileged user without capabilities, in its own pid namespace
    if os.geteuid() == 0:
        assert seen["uid"] != 0 and seen["euid"] != 0
    assert seen["cap_eff"] == 0 and seen["cap_bnd"] == 0
    assert not seen["server visible"] and seen["server root"] == [] and not seen["traced"]
    assert seen["environ of others"] == [] and len(seen["pids"]) < 10, seen["pids"]
    # and its /tmp is bounded, its environment is its own
    assert 0 < seen["tmp_bytes"] <= psutil.virtual_memory().total // 2
    assert seen["home"] == "/tmp"
    leaked = [k for k in seen["env"] if k in os.environ and k not in isolation_env_kept()]
    assert leaked == [], leaked


def isolation_env_kept() -> set[str]:
    from shoal.backends.local import container_environment

    return set(container_environment(os.environ)) | {"HOME", "PYTHONUNBUFFERED", "PWD"}  # PWD: bwrap sets it


def test_a_process_that_double_forks_into_its_own_session_ends_with_its_container(server: ServerProcess, sandbox):
    marker = os.path.join(shared_dir(), f"escaped-{uuid.uuid4().hex}")
    # Given a container whose code left a grandchild in a session of its own
    with isolation.attacker.run(show_logs=False):
        assert isolation.escape.remote(marker) > 0
        assert _processes_naming(marker), "the grandchild should run while its container does"
    # When the app stops, then the grandchild ends with its container
    deadline = time.monotonic() + 30
    while _processes_naming(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_naming(marker) == []


def _processes_naming(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if (
            any(marker in part for part in proc.info["cmdline"] or [])
            and "bwrap" not in (proc.info["cmdline"] or [""])[0]
        ):
            found.append(proc.pid)
    return found
