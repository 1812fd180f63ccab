"""A container's side of the protocol: typed requests through the one API client, blocking (one per thread)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from ..client import CONTAINER, SharedClient
from ..exception import AuthError, NotFoundError
from ..protocol import routes
from ..protocol.messages import (
    Accepted,
    Command,
    CommandResult,
    ContainerBoot,
    ExchangeReply,
    ExchangeRequest,
    HeartbeatReply,
    HeartbeatRequest,
    InputRef,
    ItemReport,
    StartedReport,
    WebReady,
)
from .ledger import ChunkLedger


class Contact:
    """When the container last exchanged with the server, shared by its APIs: an exchange proves it alive and
    carries its orders, so a heartbeat right after one (or during one held open) is skipped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last = 0.0
        self.on_cancel: Callable[[list[InputRef]], None] | None = None  # the runtime's: interrupt these inputs
        self.on_run: Callable[[list[Command]], None] | None = None  # the runtime's: run these commands

    @contextmanager
    def exchanging(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                self._last = time.monotonic()

    def recent(self, window: float) -> bool:
        """Whether an exchange is in flight now, or ended within ``window`` seconds."""
        with self._lock:
            return self._in_flight > 0 or time.monotonic() - self._last < window


class ContainerAPI:
    """The requests of one container. A server that no longer knows it (restarted, or it was stopped) ends it:
    ``SystemExit(0)``, as there is nothing left to do."""

    def __init__(
        self, url: str, container_id: str, token: str, ledger: ChunkLedger | None = None,
        contact: Contact | None = None, sync: SharedClient | None = None,
    ) -> None:  # fmt: skip
        self.url = url
        self.container_id = container_id
        self.sync = sync or SharedClient(url, token, CONTAINER)  # one pool for the container's threads
        self.ledger = ledger or ChunkLedger()  # shared by a container's APIs (one per thread)
        self.contact = contact or Contact()  # shared too

    def _call(
        self, template: str, message: Any, reply: type[Any], method: str = "POST", releasable: bool = False
    ) -> Any:
        path = routes.path(template, container_id=self.container_id)
        try:
            return self.sync.call(method, path, message, reply, releasable=releasable)
        except (AuthError, NotFoundError):
            raise SystemExit(0) from None

    def boot(self) -> ContainerBoot:
        return self._call(routes.CONTAINER_BOOT, None, ContainerBoot, "GET")  # type: ignore[no-any-return]

    def started(self, report: StartedReport) -> None:
        self._call(routes.CONTAINER_STARTED, report, dict)

    def exchange(self, request: ExchangeRequest) -> ExchangeReply:
        """Report and lease; leased chunks come back as their inputs, and a chunk that succeeded goes as one."""
        if request.outputs or request.released:
            outputs, released = self.ledger.merge(request.outputs), self.ledger.merge_released(request.released)
            request = msgspec.structs.replace(request, outputs=outputs, released=released)
        with self.contact.exchanging():
            reply: ExchangeReply = self._call(routes.CONTAINER_EXCHANGE, request, ExchangeReply)
        if reply.cancel and self.contact.on_cancel is not None:
            self.contact.on_cancel(reply.cancel)
        if reply.run and self.contact.on_run is not None:
            self.contact.on_run(reply.run)
        if any(x.count > 1 for x in reply.inputs):
            reply = msgspec.structs.replace(reply, inputs=self.ledger.expand(reply.inputs))
        return reply

    def heartbeat(self, request: HeartbeatRequest) -> HeartbeatReply:
        """A quiet beat (``wait``) is held by the server and released when another request of this container
        follows it on its connection: the exchange goes behind it rather than on a second connection."""
        reply = self._call(routes.CONTAINER_HEARTBEAT, request, HeartbeatReply, releasable=request.wait > 0)
        return reply  # type: ignore[no-any-return]

    def command_ended(self, result: CommandResult) -> None:
        self._call(routes.CONTAINER_RAN, result, dict)

    def web_ready(self, ready: WebReady) -> None:
        self._call(routes.CONTAINER_WEB, ready, dict)

    def item(self, report: ItemReport) -> bool:
        return self._call(routes.CONTAINER_ITEMS, report, Accepted).accepted  # type: ignore[no-any-return]

    def blob(self, blob_id: str) -> bytes:
        return self.sync.run(self.sync.client.get_blob(blob_id))

    def put_blob(self, blob_id: str, data: bytes) -> None:
        self.sync.run(self.sync.client.put_blob(blob_id, data, payload=True))  # a result's or an item's
