"""A container's side of the protocol: typed requests through the one API client, blocking (one per thread)."""

from __future__ import annotations

from typing import Any

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


class ContainerAPI:
    """The requests of one container. A server that no longer knows it (restarted, or it was stopped) ends it:
    ``SystemExit(0)``, as there is nothing left to do."""

    def __init__(self, url: str, container_id: str, token: str) -> None:
        self.url = url
        self.container_id = container_id
        self.sync = SyncClient(url, token, CONTAINER)

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
        return self._call(routes.CONTAINER_EXCHANGE, request, ExchangeReply)  # type: ignore[no-any-return]

    def heartbeat(self, request: HeartbeatRequest) -> HeartbeatReply:
        return self._call(routes.CONTAINER_HEARTBEAT, request, HeartbeatReply)  # type: ignore[no-any-return]

    def web_ready(self, ready: WebReady) -> None:
        self._call(routes.CONTAINER_WEB, ready, dict)

    def item(self, report: ItemReport) -> bool:
        return self._call(routes.CONTAINER_ITEMS, report, Accepted).accepted  # type: ignore[no-any-return]

    def blob(self, blob_id: str) -> bytes:
        return self.sync.run(self.sync.client.get_blob(blob_id))

    def put_blob(self, blob_id: str, data: bytes) -> None:
        self.sync.run(self.sync.client.put_blob(blob_id, data))
