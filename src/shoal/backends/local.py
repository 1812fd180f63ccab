"""Local backend: each container is a child process in its own session (process group) on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from .base import Backend, ContainerSpec


class LocalBackend(Backend):
    """Runs containers as ``python -m shoal.container`` processes; their raw output goes to one log file each."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._waiters: set[asyncio.Task[None]] = set()

    def log_path(self, container_id: str) -> Path:
        return self.log_dir / f"{container_id}.log"

    async def launch(self, spec: ContainerSpec) -> None:
        env = dict(os.environ)
        env.update(spec.env)
        env.update(
            SHOAL_SERVER_URL=spec.server_url,
            SHOAL_CONTAINER_ID=spec.container_id,
            SHOAL_CONTAINER_TOKEN=spec.container_token,
            SHOAL_FUNCTION_ID=spec.function_id,
            SHOAL_APP_ID=spec.app_id,
            PYTHONUNBUFFERED="1",
        )
        env.pop("SHOAL_TOKEN", None)
        if spec.client_token:
            env["SHOAL_TOKEN"] = spec.client_token
        # The container applies these itself, first thing: no preexec_fn (unsafe in a threaded parent).
        env["SHOAL_PARENT_PID"] = str(os.getpid())
        if spec.memory_limit_mib:
            env["SHOAL_MEMORY_LIMIT_MIB"] = str(spec.memory_limit_mib)
            env["MALLOC_ARENA_MAX"] = "2"  # keep glibc's per-thread arenas from eating the address-space limit
        with open(self.log_path(spec.container_id), "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shoal.container", env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._procs[spec.container_id] = proc
        task = asyncio.create_task(self._wait(spec.container_id, proc))
        self._waiters.add(task)
        task.add_done_callback(self._waiters.discard)

    async def _wait(self, container_id: str, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        # Take down anything the user's code started in the container's process group: no orphans.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self._procs.pop(container_id, None)
        self.on_exit(container_id, code)

    async def terminate(self, container_id: str, grace: float) -> None:
        proc = self._procs.get(container_id)
        if proc is None or proc.returncode is not None:
            return
        if grace > 0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def pid(self, container_id: str) -> int | None:
        proc = self._procs.get(container_id)
        return proc.pid if proc else None

    def list(self) -> list[str]:
        return list(self._procs)

    async def close(self) -> None:
        await asyncio.gather(*(self.terminate(cid, 2.0) for cid in list(self._procs)), return_exceptions=True)
        if self._waiters:
            await asyncio.wait(self._waiters, timeout=3)
