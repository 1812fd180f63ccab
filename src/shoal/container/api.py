"""A container's side of the protocol: typed requests through the one API client, blocking (one per thread)."""

from __future__ import annotations

from typing import Any

import msgspec

from ..client import CONTAINER, SyncClient
from ..exception import AuthError, NotFoundError
from ..protocol import routes
from ..protocol.messages import (
    Accepted,
    ContainerBoot,
    ExchangeReply,
    ExchangeRequest,
    HeartbeatReply,
    HeartbeatRequest,
    ItemReport,
    StartedReport,
    WebReady,
)
from .ledger import ChunkLedger


class ContainerAPI:
    """The requests of one container. A server that no longer knows it (restarted, or it was stopped) ends it:
    ``SystemExit(0)``, as there is nothing left to do."""

    def __init__(self, url: str, container_id: str, token: str, ledger: ChunkLedger | None = None) -> None:
        self.url = url
        self.container_id = container_id
        self.sync = SyncClient(url, token, CONTAINER)
        self.ledger = ledger or ChunkLedger()  # shared by a container's APIs (one per thread)

    def _call(self, template: str, message: Any, reply: type[Any], method: str = "POST") -> Any:
        try:
            return self.sync.call(method, routes.path(template, container_id=self.container_id), message, reply)
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
        reply: ExchangeReply = self._call(routes.CONTAINER_EXCHANGE, request, ExchangeReply)
        if any(x.count > 1 for x in reply.inputs):
            reply = msgspec.structs.replace(reply, inputs=self.ledger.expand(reply.inputs))
        return reply

    def heartbeat(self, request: HeartbeatRequest) -> HeartbeatReply:
        return self._call(routes.CONTAINER_HEARTBEAT, request, HeartbeatReply)  # type: ignore[no-any-return]

    def web_ready(self, ready: WebReady) -> None:
        self._call(routes.CONTAINER_WEB, ready, dict)

    def item(self, report: ItemReport) -> bool:
        return self._call(routes.CONTAINER_ITEMS, report, Accepted).accepted  # type: ignore[no-any-return]

    def blob(self, blob_id: str) -> bytes:
        return self.sync.run(self.sync.client.get_blob(blob_id))

    def put_blob(self, blob_id: str, data: bytes) -> None:
        self.sync.run(self.sync.client.put_blob(blob_id, data, payload=True))  # a result's or an item's
