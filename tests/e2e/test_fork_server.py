"""The fork server as the local backend drives it: real processes, no control plane (containers that cannot reach
one end by themselves, which is what these tests watch)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from msgspec.structs import replace

from shoal.backends import KINDS, Setup, fork_launch
from shoal.backends.fork_launch import launch_early
from shoal.backends.fork_server import ForkServers, Template
from shoal.backends.local import LocalBackend
from shoal.server.volumes import open_volumes

# unsandboxed: the namespaces are the sandbox tests' business (test_isolation.py); this is the protocol's
TEMPLATE = Template("ap-test", (sys.executable, "-m", "shoal.container.zygote"), (), None, isolate=False)


def test_a_forked_container_reads_its_own_environment_and_its_exit_code_comes_back(tmp_path: Path):
    async def scenario() -> dict[str, int | None]:
        exits: dict[str, int | None] = {}
        done = asyncio.Event()

        def on_exit(container_id: str, code: int | None) -> None:
            exits[container_id] = code
            done.set()

        forks = ForkServers(tmp_path, on_exit, enabled=True)
        server = await forks.server(TEMPLATE)
        assert server is not None
        # A container without SHOAL_CONTAINER_ID: the runtime says it was not started by a backend, and exits 1
        await forks.spawn(server, "ta-no-id", {"PATH": "/usr/bin:/bin"}, tmp_path / "no-id.log", 64, None)
        await asyncio.wait_for(done.wait(), 30)
        await forks.close()
        return exits

    exits = asyncio.run(scenario())
    assert exits == {"ta-no-id": 1}
    assert "started by a Shoal backend" in (tmp_path / "no-id.log").read_text()


def test_a_forked_container_is_killed_even_right_after_its_fork(tmp_path: Path):
    async def scenario() -> tuple[int | None, bool]:
        exits: dict[str, int | None] = {}
        forks = ForkServers(tmp_path, lambda cid, code: exits.__setitem__(cid, code), enabled=True)
        server = await forks.server(TEMPLATE)
        assert server is not None
        # A container whose server never answers (a closed port): its runtime keeps trying to boot
        env = {"PATH": "/usr/bin:/bin", "SHOAL_CONTAINER_ID": "ta-hangs", "SHOAL_SERVER_URL": "http://127.0.0.1:9",
               "SHOAL_CONTAINER_TOKEN": "x"}  # fmt: skip
        await forks.spawn(server, "ta-hangs", env, tmp_path / "hangs.log", 64, None)
        assert forks.holds("ta-hangs") and "ta-hangs" in forks.containers()
        await forks.terminate("ta-hangs", grace=0.0)
        held = forks.holds("ta-hangs")
        await forks.close()
        return exits.get("ta-hangs"), held

    code, held = asyncio.run(scenario())
    assert code == 128 + 9 and not held  # its runtime killed by SIGKILL (its process group), reported as a shell would


SPARE = Template("", TEMPLATE.argv, TEMPLATE.env, TEMPLATE.cwd, TEMPLATE.isolate)


def test_a_spare_launched_before_any_event_loop_is_adopted_by_the_first_app_and_forks_its_container(tmp_path: Path):
    exits: dict[str, int | None] = {}
    forks = ForkServers(tmp_path, lambda cid, code: exits.__setitem__(cid, code), enabled=True)
    forks.warm(SPARE)  # as a server does first thing, before its event loop runs (LocalBackend.prestart)
    assert forks._spare is not None and forks._spare._proc is not None
    spare_pid, spare_proc = forks._spare.pid, forks._spare._proc

    async def scenario() -> int | None:
        server = await forks.server(TEMPLATE)
        assert server is not None
        pid = server.pid
        done = asyncio.Event()
        forks.on_exit = lambda cid, code: (exits.__setitem__(cid, code), done.set())
        await forks.spawn(server, "ta-no-id", {"PATH": "/usr/bin:/bin"}, tmp_path / "no-id.log", 64, None)
        await asyncio.wait_for(done.wait(), 30)
        await forks.close()
        return pid

    assert asyncio.run(scenario()) == spare_pid  # the app's fork server is the spare, not a second start
    assert exits == {"ta-no-id": 1}
    assert spare_proc.returncode is not None  # closed: killed and waited for


def test_a_spare_no_app_adopts_ends_when_the_backend_closes(tmp_path: Path):
    forks = ForkServers(tmp_path, lambda cid, code: None, enabled=True)
    forks.warm(SPARE)
    assert forks._spare is not None and forks._spare.pid is not None
    proc = forks._spare._proc
    assert proc is not None
    asyncio.run(forks.close())
    assert proc.returncode is not None  # killed and waited for: no process left behind


def test_a_spare_that_died_before_it_was_adopted_is_a_fresh_start_for_that_container(tmp_path: Path):
    forks = ForkServers(tmp_path, lambda cid, code: None, enabled=True)
    forks.warm(SPARE)
    assert forks._spare is not None and forks._spare._proc is not None
    forks._spare._proc.kill()

    async def scenario() -> tuple[object, int]:
        server = await forks.server(TEMPLATE)  # the dead spare's start fails: None says "start it afresh"
        failures = forks.failures
        await forks.close()
        return server, failures

    server, failures = asyncio.run(scenario())
    assert server is None and failures == 1 and forks.enabled


def test_a_spare_launched_before_the_backend_is_opened_is_the_one_it_warms(tmp_path: Path):
    launch_early(SPARE, tmp_path)  # a server's start, before its slow imports (backends.Kind.prelaunch)
    early = fork_launch._early
    assert early is not None
    forks = ForkServers(tmp_path, lambda cid, code: None, enabled=True)
    forks.warm(SPARE)
    assert forks._spare is not None and forks._spare._proc is early[1].proc  # adopted: no second process
    assert fork_launch._early is None
    asyncio.run(forks.close())
    assert early[1].proc.returncode is not None


def test_an_early_spare_of_another_layout_is_stopped_and_the_backend_launches_its_own(tmp_path: Path):
    launch_early(replace(SPARE, env=(("SHOAL_OTHER", "1"),)), tmp_path)
    early = fork_launch._early
    assert early is not None
    forks = ForkServers(tmp_path, lambda cid, code: None, enabled=True)
    forks.warm(SPARE)
    assert early[1].proc.returncode is not None  # stopped and waited for: no process left behind
    assert forks._spare is not None and forks._spare._proc is not early[1].proc
    asyncio.run(forks.close())


def test_the_local_kind_prelaunches_exactly_the_spare_its_backend_warms(tmp_path: Path):
    setup = Setup(tmp_path / "state", open_volumes(tmp_path / "state", None))
    KINDS["local"].prelaunch(setup)
    early = fork_launch._early
    assert early is not None
    backend = KINDS["local"].open(setup)
    assert isinstance(backend, LocalBackend)
    backend.prestart()
    spare = backend.forks._spare
    assert spare is not None and spare._proc is early[1].proc and fork_launch._early is None
    asyncio.run(backend.close())
    assert early[1].proc.returncode is not None
