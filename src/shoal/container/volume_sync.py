"""Volumes of a container whose node does not share the server's disk (the Ray backend), with Modal's semantics.

The container starts with a copy of each volume as the server has it (pulled before the user's code loads);
``Volume.commit()`` pushes what changed in the copy since (new and changed files, deletions: the last writer
wins per file), and ``Volume.reload()`` pulls what others committed since. Nothing is visible to others before a
commit, and nothing others commit is visible here before a reload. A read-only mount is a snapshot as of the
container's start (its backend pulled it; it cannot reload in place).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..client import Client
from ..exception import InvalidError
from ..protocol import routes

Seen = dict[str, tuple[int, float]]  # relative path -> (size, mtime)


class SyncedVolume:
    """One volume's copy at ``root`` and what was last synced of it, locally and on the server."""

    def __init__(self, name: str, root: Path, read_only: bool = False) -> None:
        self.name, self.root, self.read_only = name, root, read_only
        self.local: Seen = {}  # the copy's files as of the last sync (size, st_mtime)
        self.remote: Seen = {}  # the server's files as of the last sync (size, mtime it reported)
        self.pulled = False

    async def pull(self, client: Client) -> None:
        """Bring the copy up to what the server has: files changed there since the last sync fetched, files
        deleted there removed. The copy's own uncommitted changes to other files stay (and stay uncommitted)."""
        if self.read_only and self.pulled:
            raise InvalidError(f"Volume {self.name!r} is mounted read-only here: it is the snapshot the container "
                               "started with, and cannot reload.")  # fmt: skip
        remote = await self._listing(client)
        for path, meta in remote.items():
            if self.remote.get(path) != meta:
                target = self.root / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(await client.request("GET", _file_route(self.name, path)))
                self.local[path] = _meta(target)
        for path in set(self.remote) - set(remote):
            (self.root / path).unlink(missing_ok=True)
            self.local.pop(path, None)
        self.remote = remote
        self.pulled = True

    async def push(self, client: Client) -> None:
        """Publish the copy's changes since the last sync: new and changed files, and deletions. What others
        committed meanwhile is not fetched (that is ``pull``'s business)."""
        if self.read_only:
            raise InvalidError(f"Volume {self.name!r} is mounted read-only: there is nothing to commit.")
        now = _scan(self.root)
        changed = [path for path, meta in now.items() if self.local.get(path) != meta]
        deleted = set(self.local) - set(now)
        for path in changed:
            await client.send_raw("PUT", _file_route(self.name, path), (self.root / path).read_bytes())
        for path in deleted:
            await client.request("POST", routes.path(routes.VOLUME_RM, name=self.name), {"path": path})
        self.local = now
        if changed or deleted:  # what the server now has of our files: ours, not news to pull later
            remote = await self._listing(client)
            self.remote.update({path: remote[path] for path in changed if path in remote})
            for path in deleted:
                self.remote.pop(path, None)

    async def _listing(self, client: Client) -> Seen:
        listed = await client.request("POST", routes.path(routes.VOLUME_LS, name=self.name), {"recursive": True})
        return {e["path"]: (int(e["size"]), float(e["mtime"])) for e in listed["entries"] if e["type"] == "file"}


_mounted: dict[str, SyncedVolume] = {}


def mounted(name: str | None) -> SyncedVolume | None:
    """This container's synced copy of volume ``name``, if it has one (None: the volume is shared live)."""
    return _mounted.get(name or "")


async def pull_all(client: Client, mounts: list[dict[str, Any]]) -> None:
    """At container start: pull every read-write volume into its mount (read-only ones came pulled)."""
    for mount in mounts:
        synced = SyncedVolume(mount["volume"], Path(mount["path"]), bool(mount.get("read_only")))
        _mounted[synced.name] = synced
        if synced.read_only:  # pulled by the backend before the sandbox made it read-only
            synced.local, synced.pulled = _scan(synced.root), True
        else:
            await synced.pull(client)


def _scan(root: Path) -> Seen:
    seen: Seen = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            seen[str(path.relative_to(root))] = _meta(path)
    return seen


def _meta(path: Path) -> tuple[int, float]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime


def _file_route(name: str, path: str) -> str:
    return routes.path(routes.VOLUME_FILE, name=name) + f"?path={quote(path, safe='')}"
