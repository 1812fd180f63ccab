"""The fork server: a warm template process from which containers are forked in milliseconds.

``python -m shoal.container.zygote`` is started by the local backend, once per app and sandbox layout (the same
bubblewrap command a container of that layout would get: its image, mounts and volumes), with a Unix socket as
``SHOAL_FORK_SOCKET``. It imports the container runtime once (the ~0.2 s of CPU every fresh container paid),
then forks a container per :class:`~shoal.protocol.fork.Spawn`. It never imports user code and never reads a
container's environment: each container reads its own from the memfd the server sent it, after the fork.

Each container is three processes (``docs/security.md``, "Forked containers"):

- the **keeper**, forked from here: dies with the fork server, joins the container's memory cgroup, enters new
  user, mount, pid and IPC namespaces with a private ``/tmp`` (:func:`namespaces.enter`), and reports how the
  container ended (its exit code is the container's);
- the **init**, pid 1 of the container's pid namespace: mounts its own ``/proc``, drops every capability, starts
  the runtime in a new session and reaps what the container leaves behind; when it ends, so does every process
  of the container;
- the **runtime** (``shoal.container.runtime.main``), with the container's environment, its log on stdout/stderr.

Unsandboxed (no bubblewrap), the namespaces are skipped: the keeper kills the runtime's process group instead.
"""

from __future__ import annotations

import gc

if __name__ == "__main__":  # the fork server's start: a burst of imports with no garbage to find (see settle())
    gc.disable()

import array  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import selectors  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from typing import NoReturn  # noqa: E402

from ..protocol import fork  # noqa: E402
from . import namespaces  # noqa: E402

EXIT_SETUP = 70  # the keeper could not make the container (EX_SOFTWARE): its log says why


def main() -> None:
    namespaces.die_with_parent(signal.SIGKILL)
    sock = socket.socket(fileno=int(os.environ.pop("SHOAL_FORK_SOCKET")))
    isolate = os.environ.pop("SHOAL_FORK_ISOLATE", "") == "1"
    probe = _start_probe(isolate)  # it runs while the imports do
    preload()
    settle()

    sock.send(fork.encode(fork.Hello(error=_probe_result(probe))))
    ForkServer(sock, isolate).serve()


def preload() -> None:
    """Import once what every container imports: the runtime, and the parts of Shoal a user's module imports
    (``import shoal``, ``App``, its decorators). Only Shoal's own code: never the user's."""
    from .. import app, cls, functions  # noqa: F401
    from . import loader, runtime, usercode  # noqa: F401

    with contextlib.suppress(ImportError):  # the event loop of the container's client (_loop.new_event_loop)
        import uvloop  # noqa: F401


def settle() -> None:
    """After the preload (made with the collector off: ~5 ms less, and nothing to free): move what it made
    out of the collector's sight (``gc.freeze``), so that a forked container's collections never walk (and
    copy-on-write) the fork server's modules; collection is on again for the containers."""
    gc.freeze()
    gc.enable()


class ForkServer:
    def __init__(self, sock: socket.socket, isolate: bool) -> None:
        self.sock = sock
        self.isolate = isolate
        self.keepers: dict[int, str] = {}  # keeper pid -> container id
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_w, False)

    def serve(self) -> NoReturn:
        signal.set_wakeup_fd(self.wakeup_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(self.wakeup_r, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is self.sock:
                    self._receive()
                else:
                    os.read(self.wakeup_r, 4096)
                    self._reap()

    def _receive(self) -> None:
        fds = array.array("i")
        data, ancillary, _, _ = self.sock.recvmsg(fork.MAX_MESSAGE, socket.CMSG_SPACE(fork.MAX_FDS * fds.itemsize))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if not data:  # the server is gone: so are its containers
            for pid in self.keepers:
                self._kill(pid)
            os._exit(0)
        request = fork.decode_request(data)
        if isinstance(request, fork.Spawn):
            self._spawn(request, list(fds))
        else:
            for pid, container_id in self.keepers.items():
                if container_id == request.container_id:
                    self._kill(pid)

    def _spawn(self, request: fork.Spawn, fds: list[int]) -> None:
        # the keeper starts with SIGTERM blocked: a Kill that comes at once waits until it can pass it on
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        pid = os.fork()
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        if pid == 0:
            try:
                for fd in (self.sock.fileno(), self.wakeup_r, self.wakeup_w):
                    os.close(fd)
                keep(request, fds, self.isolate)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(EXIT_SETUP)
        for fd in fds:
            os.close(fd)
        self.keepers[pid] = request.container_id
        self.sock.send(fork.encode(fork.Started(request.container_id)))

    def _kill(self, keeper: int) -> None:
        """Isolated, the container's init dies with its keeper (PR_SET_PDEATHSIG) and every process of the container
        with its init; unsandboxed, the keeper kills the runtime's process group on SIGTERM."""
        try:
            os.kill(keeper, signal.SIGKILL if self.isolate else signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        while self.keepers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            container_id = self.keepers.pop(pid, None)
            if container_id is not None:
                # a keeper killed itself (a stop right after its fork, before it set its container apart) is
                # reported as its container would be: signal N as 128 + N
                code = os.waitstatus_to_exitcode(status)
                self.sock.send(fork.encode(fork.Exited(container_id, 128 - code if code < 0 else code)))


def keep(request: fork.Spawn, fds: list[int], isolate: bool) -> NoReturn:
    """The keeper: make the container's namespaces, start its init, and exit as it does."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    log, environment = fds[0], fds[1]
    with os.fdopen(environment, "rb") as f:  # the container's own environment: read here, never by the fork server
        env: dict[str, str] = json.loads(f.read())
    os.environ.clear()  # the fork server's: nothing reads it from here on
    show(env)
    parent = os.getppid()
    namespaces.die_with_parent(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(EXIT_SETUP)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if request.cgroup and len(fds) > 2:
        try:  # into the container's memory cgroup: all its processes, and its /tmp's pages
            os.write(fds[2], b"0")
        except OSError as exc:
            print(f"shoal: the container could not join its memory cgroup ({exc}): RLIMIT_AS only", flush=True)
        os.close(fds[2])
    if isolate:
        namespaces.enter(request.tmp_mib)
    init = os.fork()
    if init == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        namespaces.die_with_parent(signal.SIGKILL)
        if isolate:
            namespaces.become_init()
            _init(env)
        os.setpgid(0, 0)  # its own process group (made on both sides of the fork: a Kill may come at once)
        run(env)
    if not isolate:  # the runtime's process group is the container: ended with it, or at the keeper's end
        with contextlib.suppress(OSError):
            os.setpgid(init, init)
        signal.signal(signal.SIGTERM, lambda signum, frame: _killpg(init))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # (isolated: a SIGTERM ends the keeper, and all)
    status = _wait_for(init)
    if not isolate:
        _killpg(init)
    os._exit(_exit_code(status))


def _init(env: dict[str, str]) -> NoReturn:
    """Pid 1 of the container: start the runtime, reap every process that ends, exit as the runtime does."""
    os.setsid()
    child = os.fork()
    if child == 0:
        os.setsid()
        run(env)
    os._exit(_exit_code(_wait_for(child, reap_all=True)))


def _wait_for(pid: int, reap_all: bool = False) -> int:
    while True:
        try:
            found, status = os.waitpid(-1 if reap_all else pid, 0)
        except ChildProcessError:
            return 0
        if found == pid:
            return status


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # a death by signal N: 128 + N, as a shell (and bwrap) reports it


def _killpg(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def show(env: dict[str, str]) -> None:
    """Show the container's environment where host tools look for it, as a fresh container's is:
    ``/proc/<pid>/environ`` (``ps e``; the container's id first, then what fits in the fork server's room). That
    file shows the environment a process started with, the fork server's, which no one reads once ``os.environ``
    has been cleared: it is written over in place."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start and env_end: fields 50 and 51 of proc(5)
    except (OSError, IndexError, ValueError):
        return
    ordered = sorted(env.items(), key=lambda item: item[0] != "SHOAL_CONTAINER_ID")
    text = b""
    for key, value in ordered:
        entry = f"{key}={value}".encode() + b"\0"
        if len(text) + len(entry) > end - start:
            break
        text += entry
    if start and text:
        ctypes.memmove(start, text.ljust(end - start, b"\0"), end - start)


def run(env: dict[str, str]) -> NoReturn:
    """Become the container: its environment, then the runtime."""
    os.environ.update(env)
    time.tzset()
    from .runtime import main as runtime_main

    try:
        runtime_main()  # ends with os._exit: nothing of the fork server's runs on the way out
    except SystemExit as exc:  # refused before it began (as sys.exit would end a fresh interpreter)
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
        sys.stderr.flush()
        os._exit(exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1)
    os._exit(0)


def _start_probe(isolate: bool) -> tuple[int, int] | None:
    """Start finding out whether this kernel lets a forked container have its own namespaces here: a child that
    makes them (its pid, and the pipe it says why not on); None unsandboxed. :func:`_probe_result` answers."""
    if not isolate:
        return None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            namespaces.enter(1)
            init = os.fork()
            if init == 0:
                namespaces.become_init()
                os._exit(0)
            os._exit(_exit_code(_wait_for(init)))
        except BaseException as exc:
            os.write(write, str(exc).encode())
        os._exit(1)
    os.close(write)
    return pid, read


def _probe_result(probe: tuple[int, int] | None) -> str:
    """'' when the probe made its namespaces (or none was needed), else why not."""
    if probe is None:
        return ""
    pid, read = probe
    with os.fdopen(read, "rb") as f:
        why = f.read().decode(errors="replace")
    status = os.waitpid(pid, 0)[1]
    if os.waitstatus_to_exitcode(status) != 0:
        return why or f"the probe ended with {os.waitstatus_to_exitcode(status)}"
    return ""


if __name__ == "__main__":
    if "SHOAL_FORK_SOCKET" not in os.environ:
        sys.exit("python -m shoal.container.zygote is started by Shoal's local backend")
    main()
