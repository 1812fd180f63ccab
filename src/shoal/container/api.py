"""The container's side of the HTTP protocol (synchronous; one client per thread)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import msgpack

from ..exception import ConnectionError

RETRY_FOR = 30.0  # seconds a container keeps retrying while the server is unreachable (e.g. restarting)


class ContainerAPI:
    def __init__(self, url: str, container_id: str, token: str) -> None:
        self.base = f"{url}/containers/{container_id}"
        self.url = url
        self.http = httpx.Client(
            headers={"authorization": f"Bearer {token}", "content-type": "application/msgpack"},
            timeout=httpx.Timeout(60.0, connect=5.0),
        )

    def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = msgpack.packb(body or {}, use_bin_type=True)
        deadline = time.monotonic() + RETRY_FOR
        while True:
            try:
                if path == "spec":
                    resp = self.http.get(f"{self.base}/spec")
                else:
                    resp = self.http.post(f"{self.base}/{path}", content=data)
                if resp.status_code in (503, 507) and time.monotonic() < deadline:  # the store is busy or full
                    time.sleep(1.0)
                    continue
                break
            except httpx.TransportError as exc:
                if time.monotonic() > deadline:
                    raise ConnectionError(f"the control plane at {self.url} is unreachable: {exc}") from exc
                time.sleep(0.2)
        if resp.status_code in (401, 404):
            raise SystemExit(0)  # a server that no longer knows this container (restarted): nothing to do but exit
        resp.raise_for_status()
        return msgpack.unpackb(resp.content, raw=False)  # type: ignore[no-any-return]

    def blob(self, blob_id: str) -> bytes:
        resp = self.http.get(f"{self.url}/blobs/{blob_id}")
        resp.raise_for_status()
        return resp.content

    def put_blob(self, blob_id: str, data: bytes) -> None:
        resp = self.http.put(f"{self.url}/blobs/{blob_id}", content=data)
        resp.raise_for_status()
