"""Isolation between apps (issue 24): code in one app's container reaches nothing of another app's containers,
secrets or volumes, from inside a real (sandboxed) container."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

import shoal
from tests.apps import isolation
from tests.conftest import REPO, ServerProcess, shared_dir


def _containers_of(srv: ServerProcess, function: str) -> list[str]:
    rows = httpx.get(f"{srv.url}/containers?all=1", headers=srv.auth, timeout=30).json()["containers"]
    return [r["container_id"] for r in rows if r["function"] == function]


@pytest.fixture
def victim_id(any_server: ServerProcess) -> str:
    """A container of another app that ran with a secret."""
    with isolation.victim.run(show_logs=False):
        assert isolation.victim_fn.remote(1) == 2
    return _containers_of(any_server, "victim_fn")[-1]


def test_a_container_token_admits_its_own_container_only(victim_id: str):
    # When the attacker's code asks for the victim's spec, lease, beat and start, with its own token or a forged one
    with isolation.attacker.run(show_logs=False):
        seen = isolation.reach_other_container.remote(victim_id)
    # Then it gets its own spec and nothing of the victim's
    assert seen.pop("own spec") == 200
    assert seen == {"spec": 403, "exchange": 403, "heartbeat": 403, "started": 403, "forged token": 401}


def test_a_container_reaches_only_the_volumes_its_function_mounts(any_server: ServerProcess, tmp_path: Path):
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


def test_a_container_has_no_capabilities_no_host_processes_and_a_bounded_tmp(any_server: ServerProcess):
    # When a container looks at itself and the host's processes
    with isolation.attacker.run(show_logs=False):
        seen = isolation.reach_host.remote(any_server.server_pid)
    # Then it is an unprivileged user without capabilities, in its own pid namespace
    if os.geteuid() == 0:
        assert seen["uid"] != 0 and seen["euid"] != 0
    assert seen["cap_eff"] == 0 and seen["cap_bnd"] == 0
    assert not seen["server visible"] and seen["server root"] == [] and not seen["traced"]
    assert seen["environ of others"] == [] and len(seen["pids"]) < 10, seen["pids"]
    # and its /tmp is bounded, its environment is its own
    assert 0 < seen["tmp_bytes"] <= psutil.virtual_memory().total // 4 + 2**20  # a plain tmpfs takes half
    assert seen["home"] == "/tmp"
    leaked = [k for k in seen["env"] if k in os.environ and k not in isolation_env_kept()]
    assert leaked == [], leaked


def test_containers_forked_from_one_fork_server_see_nothing_of_each_other(server: ServerProcess, fork_servers):
    folder = shared_dir()
    ready, release = os.path.join(folder, "ready"), os.path.join(folder, "release")
    # Given a container of an app holding a secret in its /tmp and environment
    with isolation.siblings.run(show_logs=False):
        held = isolation.hold_a_secret.spawn(ready, release)
        # When another container of the same app, forked from the same fork server, looks for it
        seen = isolation.look_for_siblings.remote(ready, release)
        holder_init = held.get(timeout=60)
    # Then both were forked (their pid 1 is the fork server's interpreter), and it sees only its own processes
    assert "shoal.container.zygote" in seen["init"] and "shoal.container.zygote" in holder_init
    assert seen["ready"] and seen["pids"] == [1, 2], seen["pids"]
    # and nothing of the secret: not in any process's environment or /tmp, not in its own
    assert seen["found"] == [] and not seen["env"] and "secret.txt" not in seen["own tmp"]


def isolation_env_kept() -> set[str]:
    from shoal.backends.layout import container_environment

    return set(container_environment(os.environ)) | {"HOME", "PYTHONUNBUFFERED", "PWD"}  # PWD: bwrap sets it


def test_a_process_that_double_forks_into_its_own_session_ends_with_its_container(any_server: ServerProcess):
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


def test_volume_commands_never_follow_a_link_a_container_planted(any_server: ServerProcess, tmp_path: Path):
    server = any_server
    token_file = server.state_dir / "local.token"
    # Given links to the server's token and state, planted by a container in its volume
    with isolation.attacker.run(show_logs=False):
        assert isolation.plant_links.remote(str(token_file)) == ["state-link", "token-link"]
    # When a user copies the folder and reads and lists what was copied, through the CLI
    cli = [sys.executable, "-m", "shoal", "volume"]
    env = {**os.environ, "SHOAL_SERVER_URL": server.url}
    copied = subprocess.run([*cli, "cp", "tests-isolation-links", "dir", "copied"], capture_output=True, text=True,
                            env=env, timeout=60)  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    got = subprocess.run([*cli, "get", "tests-isolation-links", "copied/token-link", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    planted = subprocess.run([*cli, "put", "tests-isolation-links", str(token_file), "copied/state-link/evil"],
                             capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    # Then the links were copied as links, and nothing of the server's was read or written through them
    root = server.state_dir / "volumes" / "tests-isolation-links"
    assert (root / "copied" / "token-link").is_symlink() and (root / "copied" / "state-link").is_symlink()
    assert got.returncode != 0 and "not a file" in got.stderr + got.stdout
    assert not (tmp_path / "out").exists()
    assert planted.returncode != 0 and not (server.state_dir / "evil").exists()
    assert token_file.read_text() == server.token


def test_the_dashboard_of_a_server_without_a_token_shows_containers_nothing(
    any_server: ServerProcess, victim_id: str
) -> None:
    server = any_server
    with isolation.attacker.run(show_logs=False):
        seen = isolation.reach_dashboard.remote(victim_id)
    # the login page, never a listing; a container's token logs nobody in; no action without a session
    assert seen["no token"] == [200, False, True] and seen["own token"] == [401, False, True]
    assert seen["stop"] == 401
    rows = httpx.get(f"{server.url}/containers?all=1", headers=server.auth, timeout=30).json()["containers"]
    assert [r["stop_reason"] for r in rows if r["container_id"] == victim_id] != ["stopped by the user"]


def test_a_local_mount_of_the_servers_state_is_refused(server: ServerProcess, sandbox):
    app = shoal.App("tests-mount-state")
    image = shoal.Image.debian_slim().add_local_dir(server.state_dir, "/stolen")
    app.function(image=image, serialized=True)(lambda: os.listdir("/stolen"))
    with pytest.raises(shoal.exception.InvalidError, match="server's own state"):
        with app.run(show_logs=False):
            pass


def test_a_server_with_a_token_mounts_only_paths_under_its_mount_roots(tmp_path: Path, sandbox, monkeypatch):
    srv = ServerProcess(tmp_path / "state", env={"SHOAL_TOKEN": "mount-roots-token", "SHOAL_MOUNT_ROOTS": str(REPO)})
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    monkeypatch.setenv("SHOAL_TOKEN", "mount-roots-token")
    try:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        for folder, allowed in ((elsewhere, False), (REPO / "tests" / "apps" / "local_content", True)):
            app = shoal.App("tests-mount-roots")
            image = shoal.Image.debian_slim().add_local_dir(folder, "/mounted")
            fn = app.function(image=image, serialized=True)(lambda: sorted(os.listdir("/mounted")))
            if allowed:
                with app.run(show_logs=False):
                    assert fn.remote() == sorted(os.listdir(folder))
            else:
                with pytest.raises(shoal.exception.InvalidError, match="SHOAL_MOUNT_ROOTS"):
                    with app.run(show_logs=False):
                        pass
    finally:
        srv.stop()


def test_a_containers_tmp_counts_against_its_memory_limit(server: ServerProcess, sandbox):
    from shoal.backends import memory_cgroup

    if memory_cgroup.root() is None:
        pytest.skip("no writable cgroup v1 memory controller here: /tmp is bounded by its size only")
    with isolation.attacker.run(show_logs=False):
        assert isolation.fill_memory_and_tmp.remote(20, 20) == 20  # well under the 256 MiB limit
        # 100 MiB held and 200 MiB in /tmp: each under the limit, together over it
        with pytest.raises(shoal.exception.ExecutionError) as killed:
            isolation.fill_memory_and_tmp.remote(100, 200)
    assert "SIGKILL" in str(killed.value)  # the kernel's OOM killer, within the container's cgroup
