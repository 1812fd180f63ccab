"""``.objects`` on ``Dict``, ``Queue``, ``Volume`` and ``Secret`` (Modal 1.1.2): create, list and delete named
objects from code, as ``shoal dict|queue|volume|secret`` do from the shell. Each talks to the standing (or
configured) server, where named objects live."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._kv import server_url
from ._sync import run_sync
from .client import client_for
from .exception import AlreadyExistsError, InvalidError, NotFoundError
from .protocol import routes

if TYPE_CHECKING:
    from ._kv import ServerObject
    from .secret import Secret
    from .volume import Volume

K = TypeVar("K", bound="ServerObject")


async def _request(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return await client_for(await server_url()).request(method, path, body)


def _named(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidError("a name is required")
    return name


class KVObjects(Generic[K]):
    """``Dict.objects`` / ``Queue.objects``."""

    def __init__(self, cls: type[K]) -> None:
        self._cls = cls

    def _names(self) -> builtins.list[str]:
        found = run_sync(_request("GET", routes.path(routes.KV_LIST, kind=self._cls.kind)))
        return [o["name"] for o in found["objects"] if o.get("name")]  # ephemeral ones have none

    def create(self, name: str, *, allow_existing: bool = False) -> None:
        """Create a named object (``AlreadyExistsError`` when it exists, unless ``allow_existing``)."""
        if _named(name) in self._names() and not allow_existing:
            raise AlreadyExistsError(f"{self._cls.__name__} {name!r} already exists (pass allow_existing=True)")
        run_sync(self._cls(name, create_if_missing=True)._ready())

    def list(self, *, max_objects: int | None = None) -> builtins.list[K]:
        """The named objects, as handles (``from_name``)."""
        names = sorted(self._names())
        return [self._cls(n) for n in names[:max_objects]]

    def delete(self, name: str, *, allow_missing: bool = False) -> None:
        """Delete a named object and its contents (``NotFoundError`` when missing, unless ``allow_missing``)."""
        if _named(name) not in self._names():
            if allow_missing:
                return
            raise NotFoundError(f"{self._cls.__name__} {name!r} does not exist")
        self._cls.delete(name)


class VolumeObjects:
    """``Volume.objects``."""

    def _names(self) -> builtins.list[str]:
        return [v["name"] for v in run_sync(_request("GET", routes.VOLUMES))["volumes"]]

    def create(self, name: str, *, allow_existing: bool = False) -> None:
        if _named(name) in self._names() and not allow_existing:
            raise AlreadyExistsError(f"Volume {name!r} already exists (pass allow_existing=True)")
        run_sync(_request("POST", routes.VOLUMES, {"name": name, "create_if_missing": True}))

    def list(self, *, max_objects: int | None = None) -> builtins.list[Volume]:
        from .volume import Volume

        return [Volume.from_name(n) for n in sorted(self._names())[:max_objects]]

    def delete(self, name: str, *, allow_missing: bool = False) -> None:
        if _named(name) not in self._names():
            if allow_missing:
                return
            raise NotFoundError(f"Volume {name!r} does not exist")
        run_sync(_request("POST", routes.path(routes.VOLUME_DELETE, name=name), {}))


class SecretObjects:
    """``Secret.objects`` (values are never read back: ``list`` gives handles by name)."""

    def _names(self) -> builtins.list[str]:
        return [s["name"] for s in run_sync(_request("GET", routes.SECRETS))["secrets"] if s.get("name")]

    def create(self, name: str, env_dict: dict[str, str], *, allow_existing: bool = False) -> None:
        if not isinstance(env_dict, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in env_dict.items()):  # fmt: skip
            raise InvalidError("env_dict must map strings to strings")
        if _named(name) in self._names():
            if allow_existing:
                return
            raise AlreadyExistsError(f"Secret {name!r} already exists (pass allow_existing=True)")
        run_sync(_request("POST", routes.SECRETS, {"name": name, "values": env_dict, "overwrite": False}))

    def list(self, *, max_objects: int | None = None) -> builtins.list[Secret]:
        from .secret import Secret

        return [Secret.from_name(n) for n in sorted(self._names())[:max_objects]]

    def delete(self, name: str, *, allow_missing: bool = False) -> None:
        if _named(name) not in self._names():
            if allow_missing:
                return
            raise NotFoundError(f"Secret {name!r} does not exist")
        run_sync(_request("POST", routes.path(routes.SECRET_DELETE, name=name), {}))
