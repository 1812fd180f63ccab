"""Isolation between apps (issue 24): code in one app's container reaches nothing of another app's containers,
secrets or volumes, from inside a real (sandboxed) container."""

from __future__ import annotations

from pathlib import Path

import httpx

import shoal
from tests.apps import isolation
from tests.conftest import ServerProcess


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
