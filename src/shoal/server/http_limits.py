"""What a client may make the server hold before it has sent a whole request, on every port (the API and each
web endpoint's): a request head of at most 64 KiB and 100 header lines (431 past either, as common proxies
answer), sent within 20 s of its first byte, and a body that never stalls for 60 s (408). A head the parser is
still collecting counts byte for byte as it arrives, so one endless header line is cut at the limit, not held.

Endpoint ports also share a connection budget (:class:`ConnectionBudget`), so that clients holding connections
open can never take the file descriptors the API and the store need.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from typing import Protocol

MAX_HEAD = 64 * 1024  # bytes of request line and headers
MAX_HEADERS = 100
HEAD_TIMEOUT = 20.0  # seconds from a head's first byte to its end
BODY_IDLE_TIMEOUT = 60.0  # seconds a request body may stall between two chunks

TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\nconnection: close\r\n"
             b"content-length: 52\r\n\r\nrequest head over 64 KiB or 100 header lines: refused")  # fmt: skip
TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\nconnection: close\r\n"
             b"content-length: 41\r\n\r\nthe request was not sent in time: closed")  # fmt: skip


class HeadGuard:
    """The limits of one connection: feed it what arrives and what the parser finds; it answers and closes the
    connection (through ``refuse``) when a limit is passed."""

    def __init__(self, refuse: Callable[[bytes], None]) -> None:
        self.refuse = refuse
        self.in_head = True  # between requests, the next bytes start a head
        self.in_body = False
        self.seen = 0
        self.headers = 0
        self.refused = False
        self._timer: asyncio.TimerHandle | None = None

    def received(self, size: int) -> None:
        """Bytes arrived (before the parser sees them)."""
        if self.in_head and size:
            if self.seen == 0:
                self._arm(HEAD_TIMEOUT)
            self.seen += size
        elif self.in_body:
            self._arm(BODY_IDLE_TIMEOUT)

    def resumed(self) -> None:
        """Reading resumed after the server paused it: a body's stall timer runs again."""
        if self.in_body:
            self._arm(BODY_IDLE_TIMEOUT)

    def parsed(self) -> None:
        """After the parser saw them: a head still collecting past the limit is refused."""
        if self.in_head and self.seen > MAX_HEAD:
            self._refuse(TOO_LARGE)

    def header(self) -> None:
        self.headers += 1
        if self.headers > MAX_HEADERS:
            self._refuse(TOO_LARGE)

    def head_done(self, target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """The head is complete (its request target and headers); the body follows."""
        self.in_head, self.in_body = False, True
        self._arm(BODY_IDLE_TIMEOUT)
        if len(target) + sum(len(k) + len(v) + 4 for k, v in headers) > MAX_HEAD:
            self._refuse(TOO_LARGE)

    def message_done(self) -> None:
        """The whole request arrived: no timer runs while it is answered (the keep-alive timer takes over)."""
        self.in_head, self.in_body, self.seen, self.headers = True, False, 0, 0
        self.stop()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, seconds: float) -> None:
        self.stop()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._refuse, TIMED_OUT)

    def _refuse(self, answer: bytes) -> None:
        if not self.refused:
            self.refused = True
            self.stop()
            self.refuse(answer)


LINGER = 2.0  # seconds a refused connection's further bytes are read and dropped, so the client reads the answer


def refuse_and_linger(transport: asyncio.BaseTransport, answer: bytes) -> None:
    """Send ``answer``, end the sending side, and close a little later: closing with the client's bytes unread
    would reset the connection and lose the answer (the caller drops whatever still arrives)."""
    if transport.is_closing():
        return
    transport.write(answer)  # type: ignore[attr-defined]
    if transport.can_write_eof():  # type: ignore[attr-defined]
        transport.write_eof()  # type: ignore[attr-defined]
    asyncio.get_running_loop().call_later(LINGER, transport.close)


class ConnectionBudget:
    """How many client connections the endpoint ports may hold at once, together: half of what this process may
    open (its soft file limit, raised to the hard one at start), so that the API, the store and the containers'
    logs always have descriptors left."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit if limit is not None else raise_file_limit() // 2
        self.open = 0

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open = max(0, self.open - 1)


class Closable(Protocol):
    def close(self) -> None: ...


class IdleConnections:
    """The process's client connections, and the idle keep-alive ones oldest first: when the connections near the
    file limit, the oldest idle ones are closed to make room (a client's next request on one reconnects; its
    request was never read, so nothing is lost or run twice). As nginx reuses keep-alive connections when its
    ``worker_connections`` run out. A guard: a process at its descriptor limit stops accepting, and the kernel
    queues, then drops, the rest (10,000 containers that each kept two connections did that to a process allowed
    20,000; each keeps one now, ``_http.AsyncHTTP``). Every new connection past the mark costs an idle client a
    reconnect, so the mark is well above what a fleet normally holds.

    ``high_water``: connections kept open before idle ones are closed (default: the soft file limit, raised, less
    an eighth, at least 256, for the store, blobs and the containers' pipes)."""

    def __init__(self, high_water: int | None = None) -> None:
        if high_water is None:
            soft = raise_file_limit()
            high_water = soft - max(256, soft // 8)
        self.high_water = max(1, high_water)
        self.open = 0
        self.reclaimed = 0  # idle connections closed to make room (metrics, tests)
        self._idle: dict[Closable, None] = {}  # insertion order: idle since

    def opened(self, connection: Closable) -> None:
        """A connection was accepted: above the high water mark, the oldest idle ones close."""
        self.open += 1
        while self.open > self.high_water and self._idle:
            oldest = next(iter(self._idle))
            del self._idle[oldest]
            self.reclaimed += 1
            oldest.close()  # (its connection_lost comes later and calls closed())

    def idle(self, connection: Closable) -> None:
        self._idle.pop(connection, None)
        self._idle[connection] = None

    def busy(self, connection: Closable) -> None:
        self._idle.pop(connection, None)

    def closed(self, connection: Closable) -> None:
        self._idle.pop(connection, None)
        self.open = max(0, self.open - 1)


_process_idle: IdleConnections | None = None


def process_idle() -> IdleConnections:
    """The one :class:`IdleConnections` of this process: every listener's connections count against one limit."""
    global _process_idle
    if _process_idle is None:
        _process_idle = IdleConnections()
    return _process_idle


def raise_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 65536
