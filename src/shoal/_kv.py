"""What ``Dict`` and ``Queue`` share: a lazily resolved handle on a server-side object, picklable by reference."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from ._sync import run_sync
from .client import Client, client_for, configured_url
from .exception import InvalidError, NotFoundError
from .protocol import routes

H = TypeVar("H", bound="ServerObject")


def key_bytes(key: Any) -> bytes:
    """Keys compare as bytes on the server: plain pickle (deterministic for str, int, tuples of them...)."""
    try:
        hash(key)
    except TypeError as exc:
        raise InvalidError(f"Dict keys must be hashable, not {type(key).__name__}") from exc
    return pickle.dumps(key, protocol=4)


async def server_url() -> str:
    url = await asyncio.to_thread(configured_url)
    if url is None:
        from ._daemon import standing_url

        url = await asyncio.to_thread(standing_url)  # named objects outlive processes: the standing server
    return url


class ServerObject:
    """A named (``from_name``) or ephemeral object stored by the server."""

    kind = ""

    def __init__(self, name: str | None, create_if_missing: bool = False, object_id: str | None = None) -> None:
        self.name = name
        self._create = create_if_missing
        self.object_id = object_id
        self._url: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name or self.object_id or 'ephemeral'!r})"

    def __reduce__(self) -> Any:
        # travels by reference; the receiver resolves it on its own server (a container's is its app's), creating
        # it there if the sender may create it: an object sent before its first use exists wherever it arrives
        return (_rebuild, (type(self), self.name, self.object_id, self._create))

    @classmethod
    def from_name(cls: type[H], name: str, *, create_if_missing: bool = False) -> H:
        """The object called ``name`` on the server (made on first use when ``create_if_missing``).

        Raises:
            NotFoundError: (on first use) no such object and ``create_if_missing`` is False.
        """
        if not name:
            raise InvalidError("a name is required")
        return cls(name, create_if_missing)

    @classmethod
    def from_id(cls: type[H], object_id: str) -> H:
        """The object with this id (``d.object_id``, from any process), named or ephemeral."""
        if not isinstance(object_id, str) or not object_id:
            raise InvalidError("an object id is required")
        return cls(None, object_id=object_id)

    @classmethod
    @contextlib.contextmanager
    def ephemeral(cls: type[H]) -> Iterator[H]:
        """A nameless object that is deleted when the block ends."""
        obj = cls(None, create_if_missing=True)
        run_sync(obj._ready())  # created now, so that it pickles (into containers) by id
        try:
            yield obj
        finally:
            if obj.object_id is not None and obj._url is not None:
                with contextlib.suppress(Exception):
                    run_sync(
                        client_for(obj._url).request(
                            "POST", routes.path(routes.KV_DELETE, kind=cls.kind, object_id=obj.object_id), {}
                        )
                    )

    @classmethod
    def delete(cls, name: str) -> None:
        """Delete the named object and its contents."""
        obj = cls(name)
        client, oid = run_sync(obj._ready())
        run_sync(client.request("POST", routes.path(routes.KV_DELETE, kind=cls.kind, object_id=oid), {}))

    async def _ready(self) -> tuple[Client, str]:
        if self._url is None:
            self._url = await server_url()
        client = client_for(self._url)
        if self.object_id is None:
            try:
                resp = await client.request(
                    "POST",
                    routes.path(routes.KV_OPEN, kind=self.kind),
                    {"name": self.name, "create_if_missing": self._create},
                )
            except NotFoundError as exc:
                raise NotFoundError(
                    f"{type(self).__name__} {self.name!r} does not exist: pass create_if_missing=True"
                ) from exc
            self.object_id = resp["id"]
        assert self.object_id is not None
        return client, self.object_id


def _rebuild(
    cls: type[ServerObject], name: str | None, object_id: str | None, create_if_missing: bool = False
) -> ServerObject:
    return cls(name, create_if_missing, object_id=object_id)


async def aiter_list(values: list[Any]) -> AsyncIterator[list[Any]]:
    yield values
