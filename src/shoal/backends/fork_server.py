"""Fork servers, as the local backend sees them: one warm template process per app and sandbox layout.

A container of a layout that has a fork server starts in milliseconds: the server sends a
:class:`~shoal.protocol.fork.Spawn` with the container's log file and a memfd holding its environment, and the
fork server (:mod:`shoal.container.zygote`) forks it into its own namespaces. The first container of a layout
pays for the fork server's start (one fresh container's worth). A fork server with no container for
:data:`IDLE_SECONDS` is stopped. One whose kernel refuses a forked container's namespaces says so in its hello;
then :class:`ForkServers` is turned off and containers start as fresh processes, as before.

Why per app: a fork server's memory is every forked container's starting memory, so it is never shared by two
apps' containers (it holds no container's environment either way: see the protocol).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from msgspec.structs import replace

from ..protocol import fork
from .fork_launch import Launched, Template, launch, log_name, take_early

log = logging.getLogger("shoal.fork_server")
IDLE_SECONDS = 60.0
HELLO_SECONDS = 60.0  # a fork server's start on a busy machine (an image's interpreter, imports)
MAX_FAILURES = 3  # fork servers that fail to start in a row before they are given up


class ForkServerError(RuntimeError):
    """A fork server could not start, or ended (its words, or its output, say why)."""


class ForkServerRefused(ForkServerError):
    """This kernel refuses a forked container's namespaces: fork servers are not used (containers start afresh)."""


class ForkServer:
    """One running fork server and the containers it forked."""

    def __init__(self, template: Template, log_path: Path, on_exit: Callable[[str, int | None], None]) -> None:
        self.template = template
        self.log_path = log_path
        self.on_exit = on_exit
        self.idle_since = time.monotonic()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None  # readable once the process has ended
        self._hello: asyncio.Future[str] | None = None
        self._reaped: asyncio.Future[None] | None = None  # the process has ended and been waited for
        self._started: dict[str, asyncio.Future[None]] = {}
        self._exited: dict[str, asyncio.Future[int | None]] = {}  # the containers it forked, until they end

    @property
    def containers(self) -> list[str]:
        return list(self._exited)

    @property
    def pid(self) -> int | None:
        """The fork server's process (its containers are below it), while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def launch(self, early: Launched | None = None) -> None:
        """Start the process, without waiting for it (this needs no event loop), or take ``early``, launched from
        the same template before the backend was opened (:func:`~.fork_launch.launch_early`); :meth:`start`
        follows it.

        Raises:
            OSError: the process could not be started.
        """
        launched = early or launch(self.template, self.log_path)
        self._proc, self._sock = launched.proc, launched.sock

    async def start(self) -> None:
        """Start the process (unless :meth:`launch` did) and wait for its hello.

        Raises:
            ForkServerError: it could not start, ended first, or said it cannot isolate containers here.
        """
        if self._proc is None:
            try:
                self.launch()
            except OSError as exc:
                raise ForkServerError(f"the fork server did not start ({exc})") from None
        self._follow()
        assert self._hello is not None
        try:
            error = await asyncio.wait_for(asyncio.shield(self._hello), HELLO_SECONDS)
        except (asyncio.TimeoutError, ForkServerError) as exc:
            await self.close()
            why = str(exc) or f"no word from it in {HELLO_SECONDS:.0f} s"
            raise ForkServerError(f"the fork server did not start ({why}): {self._tail()}") from None
        if error:
            await self.close()
            raise ForkServerRefused(f"a forked container cannot have its own namespaces here: {error}")

    def _follow(self) -> None:
        """Follow the fork server on the running loop: its words on the socket, and its process's end (a failed
        bwrap may leave a child holding the socket open, so the socket alone does not say it ended)."""
        assert self._proc is not None and self._sock is not None
        loop = asyncio.get_running_loop()
        self._hello = loop.create_future()
        self._reaped = loop.create_future()
        loop.add_reader(self._sock.fileno(), self._readable)
        try:
            self._pidfd = os.pidfd_open(self._proc.pid)
        except OSError:  # a kernel without pidfds (before 5.3): a thread waits for the process instead
            proc = self._proc
            threading.Thread(target=lambda: (proc.wait(), loop.call_soon_threadsafe(self._reap)), daemon=True,
                             name="fork-server-wait").start()  # fmt: skip
        else:
            loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        """The process ended: wait for it (at once), and so did every container it forked."""
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        assert self._proc is not None
        self._proc.wait()
        if self._reaped is not None and not self._reaped.done():
            self._reaped.set_result(None)
        self._gone()

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:].strip()
        return ""

    async def spawn(self, container_id: str, env: dict[str, str], log_fd: int, tmp_mib: int,
                    cgroup_procs: Path | None) -> None:  # fmt: skip
        """Fork one container; returns once it is forked (its exit comes through ``on_exit``)."""
        assert self._sock is not None
        fds = [log_fd, _memfd(json.dumps(env).encode())]
        if cgroup_procs is not None:
            fds.append(os.open(cgroup_procs, os.O_WRONLY))
        started = asyncio.get_running_loop().create_future()
        self._started[container_id] = started
        self._exited[container_id] = asyncio.get_running_loop().create_future()
        try:
            message = fork.encode(fork.Spawn(container_id, tmp_mib, cgroup=cgroup_procs is not None))
            await self._send(message, fds)
        finally:
            for fd in fds[1:]:
                os.close(fd)
        await started

    async def _send(self, message: bytes, fds: list[int]) -> None:
        assert self._sock is not None
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        while True:
            try:
                self._sock.sendmsg([message], ancillary)
                return
            except BlockingIOError:  # the fork server is behind: its socket's buffer is full
                await asyncio.sleep(0.001)
            except OSError as exc:
                raise ForkServerError(f"the fork server is gone ({exc})") from None

    async def kill(self, container_id: str) -> None:
        if container_id in self._exited:
            with contextlib.suppress(ForkServerError):
                await self._send(fork.encode(fork.Kill(container_id)), [])

    async def wait(self, container_id: str, timeout: float) -> bool:
        """Whether the container ended within ``timeout`` seconds."""
        exited = self._exited.get(container_id)
        if exited is None:
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), timeout)
        return exited.done()

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(fork.MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._gone()
                return
            self._handle(fork.decode_reply(data))

    def _handle(self, message: fork.FromForkServer) -> None:
        if isinstance(message, fork.Hello):
            if self._hello is not None and not self._hello.done():
                self._hello.set_result(message.error)
        elif isinstance(message, fork.Started):
            started = self._started.pop(message.container_id, None)
            if started is not None and not started.done():
                started.set_result(None)
        else:
            self._ended(message.container_id, message.code)

    def _ended(self, container_id: str, code: int | None) -> None:
        exited = self._exited.pop(container_id, None)
        if not self._exited:
            self.idle_since = time.monotonic()
        started = self._started.pop(container_id, None)
        if started is not None and not started.done():  # never forked: its launch fails (it starts afresh), it
            started.set_exception(ForkServerError("the fork server ended before the container was forked"))
            return  # did not exit
        if exited is not None and not exited.done():
            exited.set_result(code)
        self.on_exit(container_id, code)

    def _gone(self) -> None:
        """The fork server ended: so did every container it forked (they die with it)."""
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(ForkServerError("it ended"))
        for container_id in self.containers:
            self._ended(container_id, -signal.SIGKILL)

    @property
    def alive(self) -> bool:
        return self._sock is not None

    async def close(self) -> None:
        """Stop the fork server and with it every container it forked."""
        if self._sock is not None:
            self._gone()
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # its session: a straggler of a failed bwrap too
            if self._reaped is not None:
                await self._reaped
            else:  # launched, never followed (a spare no app adopted): killed, so this wait is short
                await asyncio.to_thread(self._proc.wait)


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("shoal-container-env", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class ForkServers:
    """The local backend's fork servers, by template; turned off for good once one cannot isolate containers."""

    def __init__(self, log_dir: Path, on_exit: Callable[[str, int | None], None], enabled: bool) -> None:
        self.log_dir = log_dir
        self.on_exit = on_exit
        self.enabled = enabled
        self._servers: dict[Template, ForkServer] = {}
        self._starting: dict[Template, asyncio.Task[ForkServer]] = {}
        self._by_container: dict[str, ForkServer] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.failures = 0  # fork servers that failed to start in a row
        self._spare: ForkServer | None = None  # warm(): launched before any app asked for it

    def warm(self, template: Template) -> None:
        """Launch a spare fork server of ``template`` (app id '') now, without waiting for it (this needs no event
        loop), for the first app of that layout to adopt: an embedded server's first container then forks at once
        instead of waiting for a fork server to start. A spare that fails is seen when it is adopted."""
        if not self.enabled or self._spare is not None or self._starting or self._servers:
            return
        spare = self._new(template)
        try:
            spare.launch(take_early(template))
        except OSError as exc:
            log.warning("the spare fork server did not start: %s", exc)
            return
        self._spare = spare

    def _adopt(self, template: Template) -> asyncio.Task[ForkServer] | None:
        """The spare's start, taken by the first app whose template it matches but for the app id (it has forked
        nothing: no other app's memory)."""
        if self._spare is None or self._spare.template != replace(template, app_id=""):
            return None
        spare, self._spare = self._spare, None
        return asyncio.create_task(self._started(spare))

    async def server(self, template: Template) -> ForkServer | None:
        """The running fork server of ``template``, started on first use; None when fork servers are off."""
        if not self.enabled:
            return None
        self._stop_idle()
        found = self._servers.get(template)
        if found is not None and found.alive:
            return found
        task = self._starting.get(template)
        if task is None:
            task = self._adopt(template) or asyncio.create_task(self._start(template))
            self._starting[template] = task
            task.add_done_callback(lambda _: self._starting.pop(template, None))
        try:
            found = self._servers[template] = await asyncio.shield(task)
        except ForkServerError as exc:
            self.failures += 1
            if self.enabled and (isinstance(exc, ForkServerRefused) or self.failures >= MAX_FAILURES):
                self.enabled = False
                log.warning("containers start as fresh processes from now on: %s", exc)
            elif self.enabled:
                log.warning("this container starts as a fresh process: %s", exc)
            return None
        self.failures = 0
        return found

    def _new(self, template: Template) -> ForkServer:
        return ForkServer(template, self.log_dir / log_name(template), self._exited)

    async def _start(self, template: Template) -> ForkServer:
        return await self._started(self._new(template))

    @staticmethod
    async def _started(server: ForkServer) -> ForkServer:
        await server.start()
        return server

    def _exited(self, container_id: str, code: int | None) -> None:
        server = self._by_container.pop(container_id, None)
        if server is not None and not server.containers:  # stopped when still idle a while from now
            asyncio.get_running_loop().call_later(IDLE_SECONDS + 1, self._stop_idle)
        self.on_exit(container_id, code)

    async def spawn(self, server: ForkServer, container_id: str, env: dict[str, str], log_path: Path,
                    tmp_mib: int, cgroup_procs: Path | None) -> None:  # fmt: skip
        self._by_container[container_id] = server
        try:
            with open(log_path, "ab") as out:
                await server.spawn(container_id, env, out.fileno(), tmp_mib, cgroup_procs)
        except BaseException:
            self._by_container.pop(container_id, None)
            raise

    def holds(self, container_id: str) -> bool:
        return container_id in self._by_container

    def containers(self) -> list[str]:
        return list(self._by_container)

    def pids(self) -> list[int]:
        """The running fork servers' processes."""
        return [pid for server in self._servers.values() if (pid := server.pid) is not None]

    async def terminate(self, container_id: str, grace: float) -> None:
        server = self._by_container.get(container_id)
        if server is None:
            return
        if grace > 0 and await server.wait(container_id, grace):
            return
        await server.kill(container_id)
        await server.wait(container_id, 10.0)

    def _stop_idle(self) -> None:
        now = time.monotonic()
        for template, server in list(self._servers.items()):
            if not server.alive or (not server.containers and now - server.idle_since > IDLE_SECONDS):
                del self._servers[template]
                task = asyncio.get_running_loop().create_task(server.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        servers = list(self._servers.values())
        self._servers.clear()
        if self._spare is not None:
            servers.append(self._spare)
            self._spare = None
        await asyncio.gather(*(s.close() for s in servers), *self._closing, return_exceptions=True)
