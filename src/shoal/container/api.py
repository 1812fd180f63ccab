"""The container's side of the HTTP protocol (synchronous; one client per thread)."""

from __future__ import annotations

import time
from typing import Any

import msgpack

from .._http import Response, SyncHTTP, TransportError
from ..exception import ConnectionError

RETRY_FOR = 30.0  # seconds a container keeps retrying while the server is unreachable (e.g. restarting)


class ContainerAPI:
    def __init__(self, url: str, container_id: str, token: str) -> None:
        self.base = f"/containers/{container_id}"
        self.url = url
        self.http = SyncHTTP(url, {"authorization": f"Bearer {token}", "content-type": "application/msgpack"})

    def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = msgpack.packb(body or {}, use_bin_type=True)
        deadline = time.monotonic() + RETRY_FOR
        while True:
            try:
                if path == "spec":
                    resp = self.http.request("GET", f"{self.base}/spec")
                else:
                    resp = self.http.request("POST", f"{self.base}/{path}", data)
                if resp.status in (503, 507) and time.monotonic() < deadline:  # the store is busy or full
                    time.sleep(1.0)
                    continue
                break
            except TransportError as exc:
                if time.monotonic() > deadline:
                    raise ConnectionError(f"the control plane at {self.url} is unreachable: {exc}") from exc
                time.sleep(0.2)
        if resp.status in (401, 404):
            raise SystemExit(0)  # a server that no longer knows this container (restarted): nothing to do but exit
        _check(resp)
        return msgpack.unpackb(resp.content, raw=False)  # type: ignore[no-any-return]

    def blob(self, blob_id: str) -> bytes:
        return _check(self.http.request("GET", f"/blobs/{blob_id}")).content

    def put_blob(self, blob_id: str, data: bytes) -> None:
        _check(self.http.request("PUT", f"/blobs/{blob_id}", data))


def _check(resp: Response) -> Response:
    if resp.status >= 400:
        raise ConnectionError(f"the control plane answered HTTP {resp.status}: {resp.content[:300]!r}")
    return resp
