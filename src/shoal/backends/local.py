"""Local backend: each container is a process in its own sandbox on this machine, forked from a warm fork server
(fork_server.py) or, where there is none to use, started afresh as ``python -m shoal.container``.

A container starts only where its request (CPUs, memory, GPUs) fits what the machine has left (the ledger of
:mod:`.resources`); the others wait, in the order that gives the function with the fewest containers running the
next place, and :meth:`LocalBackend.waiting` says what each waits for. A GPU container gets its own GPUs
(``CUDA_VISIBLE_DEVICES``, ``NVIDIA_VISIBLE_DEVICES``, their ``/dev`` nodes in its sandbox) and always starts
afresh: a fork server's sandbox has no GPU devices."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from msgspec.structs import replace

from ..config import settings
from ..exception import InvalidError
from ..protocol.specs import ImageSpec, PreparedImage, Resources
from . import memory_cgroup, sandbox
from .base import Backend, Capabilities, ContainerSpec, Unplaceable, Usage, VolumeDirs, Waiting
from .fork_server import ForkServerError, ForkServers
from .layout import SPARE, ForkedContainer, Layout
from .metering import Meter
from .resources import Grant, Ledger, Request, device_nodes, discover, total_memory_mib

log = logging.getLogger("shoal.local")
HOST = socket.gethostname()  # the node of every local container


class Queued(msgspec.Struct, frozen=True):
    """A container waiting for room on the machine: its spec, its request, since when it waits."""

    spec: ContainerSpec
    request: Request
    since: float


class ContainerProcess(msgspec.Struct, frozen=True):
    """How to start one container's process: its command line, environment, working directory, and whether it is
    sandboxed."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    sandboxed: bool


class LocalBackend(Backend):
    """Runs containers as ``python -m shoal.container`` processes; their raw output goes to one log file each."""

    def __init__(self, log_dir: Path, volumes: VolumeDirs, hidden: tuple[str, ...] = (), place: bool = True) -> None:
        """``place``: keep the machine's ledger and start only what fits (off on a Ray node: Ray placed it)."""
        super().__init__()
        self.log_dir = log_dir
        self.hidden = hidden  # more directories the sandbox covers (a Ray node's: the server's state directory)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.volumes = volumes  # a volume is a directory of this machine, bound into the sandbox
        self.layout = Layout(log_dir, volumes, hidden)
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._sandboxed: set[str] = set()
        self._waiters: set[asyncio.Task[None]] = set()
        self.forks = ForkServers(log_dir, self._fork_exited, enabled=settings().fork_server)
        self.ledger = Ledger(discover()) if place else None
        self._queued: dict[str, Queued] = {}  # waiting for room, in the order asked
        self._grants: dict[str, tuple[str, Grant]] = {}  # placed: container id -> (its function, what it holds)
        self._meter = Meter()

    def capabilities(self) -> Capabilities:
        isolated = sandbox.bwrap() is not None  # mounts are bubblewrap binds
        if self.ledger is None:
            memory = total_memory_mib()
            return Capabilities(isolated, isolated, _gpu_count(), float(os.cpu_count() or 1), memory)
        m = self.ledger.machine
        return Capabilities(isolated, isolated, len(m.gpus), m.cpus, m.memory_mib)

    def check_resources(self, resources: Resources) -> None:
        if self.ledger is not None:
            try:
                self.ledger.check(Request.of(resources))
            except InvalidError as exc:
                raise Unplaceable(str(exc)) from None

    def usage(self) -> dict[str, object]:
        return self.ledger.usage() if self.ledger is not None else {}

    def waiting(self) -> dict[str, Waiting]:
        if self.ledger is None:
            return {}
        now = time.monotonic()
        return {cid: Waiting(now - q.since, self.ledger.shortfall(q.request) or "starting")
                for cid, q in self._queued.items()}  # fmt: skip

    def prepare_image(
        self, image: ImageSpec, log: Callable[[str], None], fetch: Callable[[str], bytes]
    ) -> PreparedImage:
        from .._image_build import materialise  # only for functions with an image: not on every server's start

        return materialise(image, log, fetch)

    def log_path(self, container_id: str) -> Path:
        return self.log_dir / f"{container_id}.log"

    def output_tail(self, container_id: str, lines: int = 20) -> str:
        try:
            with open(self.log_path(container_id), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                data = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])

    def _devices(self, spec: ContainerSpec) -> list[str]:
        """The GPU device nodes the container's sandbox passes through: those of its GPUs (none when fake)."""
        held = self._grants.get(spec.container_id)
        if held is None or not held[1].gpus or self.ledger is None or self.ledger.machine.fake_gpus:
            return []
        return device_nodes(held[1].gpus)

    def command(self, spec: ContainerSpec) -> ContainerProcess:
        """How to start the container's process here. The Ray backend's actors start theirs the same way on their
        node."""
        env = self.layout.environment(spec)
        image = spec.image or PreparedImage()
        command = [image.python or sys.executable, "-m", "shoal.container"]
        if not sandbox.bwrap():
            return ContainerProcess(command, env, image.workdir, False)
        command = self.layout.in_sandbox(spec, command, devices=self._devices(spec))
        # its processes and its /tmp count against one memory limit, where cgroups allow (memory_cgroup.py)
        command = memory_cgroup.joined(spec.container_id, spec.resources.memory_limit, command)
        return ContainerProcess(command, env, None, True)

    def forked(self, spec: ContainerSpec) -> ForkedContainer:
        """How to fork the container from a fork server: the server's template, and the container's own part."""
        return self.layout.forked(spec)

    async def launch(self, spec: ContainerSpec) -> None:
        if self.ledger is None:
            await self._start(spec, Grant(0.0, 0))
            return
        request = Request.of(spec.resources)
        grant = self.ledger.take(spec.container_id, request) if not self._queued else None
        if grant is None:  # it waits its turn (and while others wait, none jumps the queue)
            self._queued[spec.container_id] = Queued(spec, request, time.monotonic())
            self._place_waiting()
            return
        await self._start(spec, grant)

    def _place_waiting(self) -> None:
        """Start the waiting containers that fit now: the function with the fewest containers placed goes first
        (no function starves another), then the one that waited longest."""
        assert self.ledger is not None
        placed: dict[str, int] = {}
        for function_id, _ in self._grants.values():
            placed[function_id] = placed.get(function_id, 0) + 1
        for cid, q in sorted(self._queued.items(), key=lambda item: (placed.get(item[1].spec.function_id, 0),
                                                                      item[1].since)):  # fmt: skip
            grant = self.ledger.take(cid, q.request)
            if grant is None:
                continue
            del self._queued[cid]
            placed[q.spec.function_id] = placed.get(q.spec.function_id, 0) + 1
            task = asyncio.create_task(self._start_placed(q.spec, grant))
            self._waiters.add(task)
            task.add_done_callback(self._waiters.discard)

    async def _start_placed(self, spec: ContainerSpec, grant: Grant) -> None:
        try:
            await self._start(spec, grant)
        except Exception as exc:  # noqa: BLE001 - a start that fails is the container's end, never a stuck one
            log.warning("container %s could not start: %s", spec.container_id, exc)
            self.on_exit(spec.container_id, 127)

    def _gpu_environment(self, grant: Grant) -> dict[str, str]:
        """Which GPUs the container sees: its own (by UUID for CUDA, which numbers only the devices a sandbox
        shows; by index for the NVIDIA toolkit), or none on a machine that has some."""
        if self.ledger is None or not self.ledger.machine.gpus:
            return {}
        indexes = ",".join(str(i) for i in grant.gpus)
        by_index = {g.index: g for g in self.ledger.machine.gpus}
        uuids = [by_index[i].uuid for i in grant.gpus]
        cuda = ",".join(uuids) if all(uuids) else indexes
        return {"CUDA_VISIBLE_DEVICES": cuda, "NVIDIA_VISIBLE_DEVICES": indexes or "void",
                "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}  # fmt: skip

    def _release(self, container_id: str) -> None:
        """What an ended container held goes back, and the containers waiting for it get their turn."""
        held = self._grants.pop(container_id, None)
        if held is not None and self.ledger is not None:
            self.ledger.give_back(held[1])
            if self._queued:
                self._place_waiting()

    async def _start(self, spec: ContainerSpec, grant: Grant) -> None:
        """Start a placed container with what it was granted (given back if it cannot start)."""
        self._grants[spec.container_id] = (spec.function_id, grant)
        gpu_env = self._gpu_environment(grant)
        if gpu_env:
            spec = replace(spec, env={**spec.env, **gpu_env})
        try:
            await self._run(spec, grant)
        except BaseException:
            self._release(spec.container_id)
            raise

    async def _run(self, spec: ContainerSpec, grant: Grant) -> None:
        if self.forks.enabled and not grant.gpus and await self._fork(spec):
            self.on_placed(spec.container_id, HOST)
            return
        started = self.command(spec)
        if started.sandboxed:
            self._sandboxed.add(spec.container_id)
        with open(self.log_path(spec.container_id), "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *started.argv, env=started.env, stdin=asyncio.subprocess.DEVNULL, cwd=started.cwd,
                stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._procs[spec.container_id] = proc
        self.on_placed(spec.container_id, HOST)
        task = asyncio.create_task(self._wait(spec.container_id, proc))
        self._waiters.add(task)
        task.add_done_callback(self._waiters.discard)

    def prestart(self) -> None:
        """The spare fork server (:meth:`warm`), launched as soon as the backend is opened: its interpreter and
        imports run beside the rest of the server's start."""
        self.warm("")

    def warm(self, server_url: str) -> None:
        """A spare fork server for the commonest layout (no image, no volume), which the first app of that layout
        adopts: a fresh embedded server's first container forks at once. (A fork server's template holds no
        server URL: each container gets it in its own environment.)"""
        if self.forks.enabled:
            self.forks.warm(self.layout.template(replace(SPARE, server_url=server_url)))

    async def _fork(self, spec: ContainerSpec) -> bool:
        """Fork the container from its fork server; False when there is none to use (then it starts afresh)."""
        made = self.forked(spec)
        server = await self.forks.server(made.template)
        if server is None:
            return False
        cgroup = memory_cgroup.made(spec.container_id, spec.resources.memory_limit)
        try:
            await self.forks.spawn(server, spec.container_id, made.env, self.log_path(spec.container_id), made.tmp_mib,
                                   cgroup)  # fmt: skip
        except ForkServerError as exc:
            log.warning("container %s starts afresh: %s", spec.container_id, exc)
            return False
        return True

    def _fork_exited(self, container_id: str, code: int | None) -> None:
        memory_cgroup.remove(container_id)
        self._release(container_id)
        self.on_exit(container_id, code)

    async def _wait(self, container_id: str, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        # Take down anything the user's code started in the container's process group: no orphans.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self._procs.pop(container_id, None)
        self._sandboxed.discard(container_id)
        memory_cgroup.remove(container_id)
        self._release(container_id)
        self.on_exit(container_id, code)

    async def terminate(self, container_id: str, grace: float) -> None:
        if self._queued.pop(container_id, None) is not None:  # never placed: it never ran
            asyncio.get_running_loop().call_soon(self.on_exit, container_id, 0)
            return
        if self.forks.holds(container_id):
            await self.forks.terminate(container_id, grace)
            return
        proc = self._procs.get(container_id)
        if proc is None or proc.returncode is not None:
            return
        if grace > 0:
            if container_id not in self._sandboxed:  # bwrap would die at once and take the container with it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
            # either way the container was told to stop (its next heartbeat or lease says so): give it the grace
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def sample(self) -> dict[str, Usage]:
        roots = [p.pid for p in self._procs.values() if p.returncode is None] + self.forks.pids()
        machine = self.ledger.machine if self.ledger is not None else None
        real_gpus = machine is not None and bool(machine.gpus) and not machine.fake_gpus
        gpus_of = {cid: held[1].gpus for cid, held in self._grants.items() if held[1].gpus} if real_gpus else {}
        return await asyncio.to_thread(self._meter.measure, roots, gpus_of)

    def pid(self, container_id: str) -> int | None:
        proc = self._procs.get(container_id)
        return proc.pid if proc else None

    def list(self) -> list[str]:
        return [*self._queued, *self._procs, *self.forks.containers()]

    def has(self, container_id: str) -> bool:
        return container_id in self._queued or container_id in self._procs or self.forks.holds(container_id)

    async def close(self) -> None:
        await asyncio.gather(*(self.terminate(cid, 2.0) for cid in self.list()), return_exceptions=True)
        await self.forks.close()
        if self._waiters:
            await asyncio.wait(self._waiters, timeout=3)


@functools.cache
def _gpu_count() -> int:
    """GPUs on this machine, as ``nvidia-smi -L`` lists them (0 without it)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    found = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return sum(line.startswith("GPU ") for line in found.stdout.splitlines()) if found.returncode == 0 else 0
