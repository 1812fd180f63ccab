"""``Dict``: a durable key-value store on the server, shared by clients and containers (Modal's API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

from ._aio import aio_gen_method, aio_method
from ._kv import ServerObject, key_bytes
from ._sync import run_sync
from .objects import KVObjects
from .protocol import routes
from .serialization import dumps, loads


class Dict(ServerObject):
    """``Dict.from_name("cache", create_if_missing=True)`` or ``with Dict.ephemeral() as d:``.

    Keys are hashable values (compared by their pickle); values are anything cloudpickle can carry (up to
    64 MiB each). Every method has an ``.aio`` variant. Pass a Dict as an argument to use it in a container.
    """

    kind = "dict"
    objects: ClassVar[KVObjects[Dict]]  # Dict.objects.create/list/delete

    async def _op(self, op: str, **body: Any) -> dict[str, Any]:
        client, oid = await self._ready()
        return await client.request("POST", routes.path(routes.DICT_OP, object_id=oid), {"op": op, **body}, packed=True)  # type: ignore[no-any-return]

    @aio_method
    async def get(self, key: Any, default: Any = None) -> Any:
        """The value for ``key``, or ``default``."""
        resp = await self._op("get", key=key_bytes(key))
        return loads(resp["value"]) if resp["found"] else default

    @aio_method
    async def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        """Set ``key``; with ``skip_if_exists`` an existing value is kept. Returns whether the value was written."""
        resp = await self._op("put", key=key_bytes(key), value=dumps(value), skip_if_exists=skip_if_exists)
        return bool(resp["created"]) or not skip_if_exists

    @aio_method
    async def update(self, other: Any = None, **kwargs: Any) -> None:
        """Set many keys at once, atomically."""
        items = dict(other or {}, **kwargs)
        await self._op("update", items=[[key_bytes(k), dumps(v)] for k, v in items.items()])

    @aio_method
    async def pop(self, key: Any) -> Any:
        """Remove ``key`` and return its value. Raises KeyError when it is missing."""
        resp = await self._op("pop", key=key_bytes(key))
        if not resp["found"]:
            raise KeyError(key)
        return loads(resp["value"])

    @aio_method
    async def contains(self, key: Any) -> bool:
        return bool((await self._op("contains", key=key_bytes(key)))["found"])

    @aio_method
    async def len(self) -> int:
        return int((await self._op("len"))["len"])

    @aio_method
    async def clear(self) -> None:
        await self._op("clear")

    @aio_gen_method
    async def keys(self) -> AsyncIterator[list[Any]]:
        yield [loads(k) for k, _ in (await self._op("keys"))["items"]]

    @aio_gen_method
    async def values(self) -> AsyncIterator[list[Any]]:
        yield [loads(v) for _, v in (await self._op("values"))["items"]]

    @aio_gen_method
    async def items(self) -> AsyncIterator[list[Any]]:
        yield [(loads(k), loads(v)) for k, v in (await self._op("items"))["items"]]

    def __getitem__(self, key: Any) -> Any:
        resp = run_sync(self._op("get", key=key_bytes(key)))
        if not resp["found"]:
            raise KeyError(key)
        return loads(resp["value"])

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def __contains__(self, key: Any) -> bool:
        return bool(self.contains(key))

    def __len__(self) -> int:
        return int(self.len())


Dict.objects = KVObjects(Dict)
