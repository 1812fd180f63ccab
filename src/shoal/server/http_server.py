"""The control plane's HTTP server: uvicorn, told first when it is stopping (see :class:`HttpServer`)."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import socket
import threading
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from .. import _loop
from .control import ControlPlane
from .http_limits import BoundedHttpTools

log = logging.getLogger("shoal.server")

EXIT_DEADLINE = 4.0  # seconds from SIGTERM to exit, whatever is still running
SHUTDOWN_GRACE = 1  # seconds for in-flight requests once long polls have been told to answer
SETTLE_AFTER = 2.0  # seconds after the start: the collector's settling (_loop.settle_gc)


class HttpServer(uvicorn.Server):
    """uvicorn, told first when it is stopping: the control plane stops deciding and ends its long polls before
    uvicorn waits for open requests, so SIGTERM exits in about a second (not a long poll's 30 s), and nothing runs
    its client-timeout reaper while clients cannot reach it."""

    def __init__(self, app: ASGIApp, plane: ControlPlane) -> None:
        super().__init__(
            uvicorn.Config(
                app, log_level="warning", lifespan="on", access_log=False, timeout_keep_alive=60,
                http=BoundedHttpTools,  # bounded request heads, no slow-loris (http_limits.py)
                ws="none",  # the API has no websocket route (an endpoint's go through the gateway): no import of them
                timeout_graceful_shutdown=SHUTDOWN_GRACE,
            )
        )  # fmt: skip
        self.plane = plane
        self.record: Path | None = None

    def serve_on(self, sock: socket.socket, parent_pid: int | None = None) -> None:
        """Serve on ``sock`` until stopped (SIGINT, SIGTERM), or until ``parent_pid`` exits (an embedded server)."""

        async def main() -> None:
            watcher = asyncio.create_task(_watch_parent(self, parent_pid)) if parent_pid else None
            await self.serve(sockets=[sock])
            if watcher:
                watcher.cancel()

        _loop.run(main())

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # a full collection takes ~10 ms: after the first requests of a cold run, not before them
        asyncio.get_running_loop().call_later(SETTLE_AFTER, _loop.settle_gc)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        deadline = threading.Timer(EXIT_DEADLINE, _exit_now, args=(self.record, asyncio.get_running_loop()))
        deadline.daemon = True
        deadline.start()
        await self.plane.quiesce()
        await super().shutdown(sockets)


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


async def _watch_parent(server: uvicorn.Server, parent_pid: int) -> None:
    """An embedded server lives only as long as the process that started it."""
    while True:
        await asyncio.sleep(0.5)
        if os.getppid() != parent_pid:
            server.should_exit = True
            return
