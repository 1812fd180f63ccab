"""A container's volume copy (the Ray backend) against an in-memory server: what commit pushes and reload pulls."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shoal.container.volume_sync import SyncedVolume


class FakeServer:
    """The volume routes SyncedVolume uses, over a dict of path -> bytes (mtime: a counter per write)."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, float]] = {}
        self.clock = itertools.count(1)

    def put(self, path: str, data: bytes) -> None:
        self.files[path] = (data, float(next(self.clock)))

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if path.endswith("/ls"):
            entries = [{"path": p, "type": "file", "size": len(d), "mtime": m} for p, (d, m) in self.files.items()]
            return {"entries": entries}
        if path.endswith("/rm"):
            assert body is not None
            self.files.pop(body["path"], None)
            return {}
        return self.files[_path_of(path)][0]

    async def send_raw(self, method: str, path: str, data: bytes) -> None:
        self.put(_path_of(path), data)


def _path_of(route: str) -> str:
    return parse_qs(urlsplit(route).query)["path"][0]


def test_commit_pushes_only_the_copys_changes_and_reload_pulls_only_what_others_committed(tmp_path: Path) -> None:
    server = FakeServer()
    server.put("a.txt", b"a1")
    server.put("b.txt", b"b1")
    copy = SyncedVolume("vol", tmp_path)
    client: Any = server

    asyncio.run(copy.pull(client))  # the container's start
    assert (tmp_path / "a.txt").read_bytes() == b"a1" and (tmp_path / "b.txt").read_bytes() == b"b1"

    (tmp_path / "a.txt").write_bytes(b"a2-mine")  # changed here, not committed
    server.put("b.txt", b"b2-theirs")  # another container committed
    server.put("c.txt", b"c1-theirs")
    assert (tmp_path / "b.txt").read_bytes() == b"b1" and not (tmp_path / "c.txt").exists()  # not before reload

    asyncio.run(copy.pull(client))  # reload: their files come; my uncommitted change stays
    assert (tmp_path / "b.txt").read_bytes() == b"b2-theirs" and (tmp_path / "c.txt").read_bytes() == b"c1-theirs"
    assert (tmp_path / "a.txt").read_bytes() == b"a2-mine" and server.files["a.txt"][0] == b"a1"

    server.put("d.txt", b"d1-theirs")  # committed by another between my reload and my commit
    (tmp_path / "c.txt").unlink()
    asyncio.run(copy.push(client))  # commit: my change and my deletion, nothing else
    assert server.files["a.txt"][0] == b"a2-mine" and "c.txt" not in server.files
    assert server.files["b.txt"][0] == b"b2-theirs"

    asyncio.run(copy.pull(client))  # what another committed before my commit still comes with the next reload
    assert (tmp_path / "d.txt").read_bytes() == b"d1-theirs"
