"""``Volume``: a persistent directory shared by containers, mounted at the path you choose.

    vol = shoal.Volume.from_name("results", create_if_missing=True)

    @app.function(volumes={"/data": vol})
    def work(i):
        with open(f"/data/{i}.out", "w") as f: ...
        vol.commit()

On the local backend a volume is one directory on the server's machine: writes are visible to all containers
at once, and ``commit``/``reload`` are kept (no-ops) so the same code works where they sync.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from ._aio import aio_gen_method, aio_method
from ._kv import server_url
from ._sync import run_sync
from .client import Client, client_for
from .config import in_container
from .exception import InvalidError, NotFoundError
from .objects import VolumeObjects
from .protocol import routes


class FileEntry(msgspec.Struct, frozen=True):
    """One entry of ``Volume.listdir``."""

    path: str
    type: str  # "file" or "directory"
    mtime: float
    size: int


class Volume:
    """A named (``from_name``) or ephemeral volume; ``read_only()`` gives a read-only mount of it."""

    objects: ClassVar[VolumeObjects]  # Volume.objects.create/list/delete

    def __init__(self, name: str | None, create_if_missing: bool = False, read_only: bool = False) -> None:
        self.name = name
        self._create = create_if_missing
        self._read_only = read_only
        self._url: str | None = None
        self._ensured = False  # created (or found) on the server at _url

    def __repr__(self) -> str:
        return f"Volume({self.name!r}{', read_only' if self._read_only else ''})"

    def __reduce__(self) -> Any:
        return (Volume, (self.name, False, self._read_only))

    @staticmethod
    def from_name(name: str, *, create_if_missing: bool = False) -> Volume:
        if not name:
            raise InvalidError("a volume needs a name")
        return Volume(name, create_if_missing)

    @staticmethod
    @contextlib.contextmanager
    def ephemeral() -> Iterator[Volume]:
        """A volume deleted when the block ends."""
        vol = Volume(None, True)
        run_sync(vol._ready())
        try:
            yield vol
        finally:
            with contextlib.suppress(Exception):
                run_sync(
                    client_for(vol._url or "").request("POST", routes.path(routes.VOLUME_DELETE, name=vol.name), {})
                )

    @staticmethod
    def delete(name: str) -> None:
        vol = Volume(name)
        client = run_sync(vol._ready())
        run_sync(client.request("POST", routes.path(routes.VOLUME_DELETE, name=name), {}))

    def read_only(self) -> Volume:
        """The same volume, mounted read-only."""
        return Volume(self.name, self._create, True)

    async def _ready(self) -> Client:
        url = await server_url()
        if url != self._url:  # first use, or the process now talks to another server: make sure it exists there
            self._url, self._ensured = url, False
        client = client_for(url)
        if not self._ensured and (self.name is None or self._create):
            try:
                resp = await client.request(
                    "POST", routes.VOLUMES, {"name": self.name, "create_if_missing": self._create}
                )
            except NotFoundError as exc:
                raise NotFoundError(f"Volume {self.name!r} does not exist: pass create_if_missing=True") from exc
            self.name, self._ensured = resp["name"], True
        return client

    def mount_spec(self, path: str) -> dict[str, Any]:
        """What the server needs to mount this volume at ``path`` (created on the server first)."""
        run_sync(self._ready())
        return {"path": path, "volume": self.name, "read_only": self._read_only}

    # ---- files ----------------------------------------------------------------------------------

    @aio_method
    async def commit(self) -> None:
        """Make this container's writes visible to others (immediate on the local backend; on the Ray backend,
        the container's copy pushes its changes: the last writer wins per file)."""
        client = await self._ready()
        synced = _synced(self.name)
        if synced is not None:
            await synced.push(client)

    @aio_method
    async def reload(self) -> None:
        """See other containers' committed writes (immediate on the local backend; on the Ray backend, the
        container's copy pulls what was committed since)."""
        client = await self._ready()
        synced = _synced(self.name)
        if synced is not None:
            await synced.pull(client)

    @aio_method
    async def listdir(self, path: str = "/", *, recursive: bool = False) -> list[FileEntry]:
        client = await self._ready()
        resp = await client.request(
            "POST", routes.path(routes.VOLUME_LS, name=self.name), {"path": path, "recursive": recursive}
        )
        return [FileEntry(**e) for e in resp["entries"]]

    @aio_gen_method
    async def read_file(self, path: str) -> AsyncIterator[list[bytes]]:
        """The file's content, as chunks of bytes."""
        client = await self._ready()
        data = await client.request("GET", routes.path(routes.VOLUME_FILE, name=self.name) + f"?path={_quote(path)}")
        yield [data[i : i + 1 << 20] for i in range(0, len(data), 1 << 20)] or [b""]

    @aio_method
    async def remove_file(self, path: str, *, recursive: bool = False) -> None:
        client = await self._ready()
        await client.request(
            "POST", routes.path(routes.VOLUME_RM, name=self.name), {"path": path, "recursive": recursive}
        )

    @aio_method
    async def copy_files(self, src_paths: list[str], dst_path: str) -> None:
        client = await self._ready()
        await client.request(
            "POST", routes.path(routes.VOLUME_CP, name=self.name), {"sources": list(src_paths), "destination": dst_path}
        )

    @contextlib.contextmanager
    def batch_upload(self, force: bool = False) -> Iterator[_Upload]:
        """Upload files in one go: ``with vol.batch_upload() as b: b.put_file(local, remote)``."""
        upload = _Upload(self, force)
        yield upload
        run_sync(upload.flush())


class _Upload:
    def __init__(self, volume: Volume, force: bool) -> None:
        self.volume = volume
        self.force = force
        self.files: list[tuple[Path, str]] = []

    def put_file(self, local_file: str | Path, remote_path: str) -> None:
        path = Path(local_file)
        if not path.is_file():
            raise InvalidError(f"put_file: no file {path}")
        self.files.append((path, remote_path))

    def put_directory(self, local_path: str | Path, remote_path: str) -> None:
        root = Path(local_path)
        if not root.is_dir():
            raise InvalidError(f"put_directory: no directory {root}")
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            self.files.append((f, f"{remote_path.rstrip('/')}/{f.relative_to(root)}"))

    async def flush(self) -> None:
        client = await self.volume._ready()
        if not self.force:
            for _, remote in self.files:
                try:
                    await client.request("POST", routes.path(routes.VOLUME_LS, name=self.volume.name), {"path": remote})
                except NotFoundError:
                    continue
                raise InvalidError(f"{remote} exists in {self.volume!r}: pass force=True to overwrite")
        for local, remote in self.files:
            data = await asyncio.to_thread(local.read_bytes)
            await client.send_raw(
                "PUT", routes.path(routes.VOLUME_FILE, name=self.volume.name) + f"?path={_quote(remote)}", data
            )


def _synced(name: str | None) -> Any:
    """The container's own copy of volume ``name`` where it has one (the Ray backend), else None."""
    if not in_container():
        return None
    from .container import volume_sync

    return volume_sync.mounted(name)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


Volume.objects = VolumeObjects()
