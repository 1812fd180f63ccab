"""The control plane's HTTP server: its API (an ASGI app) on this package's own front (``asgi.py`` over
``listener.py``), told first when it is stopping (see :class:`HttpServer`)."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import socket
import threading
from pathlib import Path

from .. import _loop
from . import listener
from .asgi import App, AsgiFront, Lifespan
from .control import ControlPlane
from .http_limits import ConnectionBudget, raise_file_limit

log = logging.getLogger("shoal.server")

EXIT_DEADLINE = 4.0  # seconds from SIGTERM to exit, whatever is still running
SHUTDOWN_GRACE = 1  # seconds for in-flight requests once long polls have been told to answer
SETTLE_AFTER = 2.0  # seconds after the start: the collector's settling (_loop.settle_gc)
UNBOUNDED = 1 << 62  # the API's connections are never refused (each container holds one or two): the endpoint ports'
# budget (http_limits.ConnectionBudget) is what keeps descriptors for the API


class HttpServer:
    """Serves the API until stopped. It tells the control plane first when it is stopping: the plane stops
    deciding and ends its long polls before open requests are waited for, so SIGTERM exits in about a second (not
    a long poll's 30 s), and nothing runs its client-timeout reaper while clients cannot reach it."""

    def __init__(self, app: App, plane: ControlPlane) -> None:
        self.app = app
        self.plane = plane
        self.record: Path | None = None
        self.started = False
        self.connections: set[listener.Connection] = set()  # the clients' open connections, while serving
        self._stop: asyncio.Event | None = None

    def serve_on(self, sock: socket.socket, parent_pid: int | None = None) -> None:
        """Serve on ``sock`` until stopped (SIGINT, SIGTERM), or until ``parent_pid`` exits (an embedded server)."""
        _loop.run(self.serve(sock, parent_pid))

    async def serve(
        self, sock: socket.socket, parent_pid: int | None = None, signals: bool = True, backlog: int = listener.BACKLOG
    ) -> None:
        """Serve on ``sock`` until :meth:`stop` (or a signal, with ``signals``; or ``parent_pid``'s exit), with
        ``backlog`` connections waiting to be accepted."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        lifespan = Lifespan(self.app)
        await lifespan.startup()  # the control plane's start
        raise_file_limit()
        server, connections = await listener.serve(
            AsgiFront(self.app, _address(sock)), sock, ConnectionBudget(UNBOUNDED), backlog
        )
        self.connections = connections
        handled = [s for s in (signal.SIGINT, signal.SIGTERM) if signals and _handle(loop, s, self.stop)]
        watcher = loop.create_task(_watch_parent(self, parent_pid)) if parent_pid else None
        loop.call_later(SETTLE_AFTER, _loop.settle_gc)  # a full collection (~10 ms): after a cold run's first requests
        self.started = True
        try:
            await self._stop.wait()
        finally:
            if watcher:
                watcher.cancel()
            deadline = threading.Timer(EXIT_DEADLINE, _exit_now, args=(self.record, loop))
            deadline.daemon = True
            deadline.start()
            try:
                await self.plane.quiesce()
                await listener.close(server, connections, SHUTDOWN_GRACE)
                await lifespan.shutdown()  # the control plane's stop
            finally:
                deadline.cancel()
                for s in handled:  # a second Ctrl-C while stopping is the first's: the deadline bounds the stop
                    loop.remove_signal_handler(s)

    def stop(self) -> None:
        """Stop serving (from the server's event loop)."""
        if self._stop is not None:
            self._stop.set()


def _address(sock: socket.socket) -> tuple[str, int]:
    name = sock.getsockname()
    return (name[0], name[1]) if isinstance(name, tuple) else ("", 0)


def _handle(loop: asyncio.AbstractEventLoop, sig: signal.Signals, stop: object) -> bool:
    """Call ``stop`` on ``sig`` (False where the loop cannot: not the main thread)."""
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        loop.add_signal_handler(sig, stop)  # type: ignore[arg-type]
        return True
    return False


def _exit_now(record: Path | None, loop: asyncio.AbstractEventLoop) -> None:
    """The stop took too long: say where it was stuck (in the server log), then exit as a crash would. The store
    is made for that (every acknowledged change is committed; the next start re-queues what was running)."""
    log.warning("the server did not stop within %ss; exiting now. Where it was:", EXIT_DEADLINE)
    faulthandler.dump_traceback(all_threads=True)
    try:  # best effort from another thread: what the event loop was waiting for
        for task in list(asyncio.all_tasks(loop)):
            task.print_stack(limit=8)
    except Exception:  # noqa: BLE001 - diagnostics only
        pass
    if record is not None:
        record.unlink(missing_ok=True)
    os._exit(1)


async def _watch_parent(server: HttpServer, parent_pid: int) -> None:
    """An embedded server lives only as long as the process that started it."""
    while True:
        await asyncio.sleep(0.5)
        if os.getppid() != parent_pid:
            server.stop()
            return
