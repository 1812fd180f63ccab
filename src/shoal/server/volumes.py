"""Volumes on the local backend: one directory per volume under the server's state, mounted into containers.

Writes are visible to every container as soon as they reach the disk, so ``commit``/``reload`` have nothing to
do here; the SDK keeps them (as no-ops) so code written for Modal stays correct on a backend that syncs.
Paths given by clients are resolved inside the volume's directory; escaping it is refused.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from .errors import Invalid, NotFound

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class VolumeStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def dir(self, name: str) -> Path:
        if not NAME.match(name):
            raise Invalid(f"invalid volume name {name!r}: letters, digits, '.', '_' and '-' (at most 64)")
        path = self.root / name
        if not path.is_dir():
            raise NotFound(f"volume {name}")
        return path

    def exists(self, name: str) -> bool:
        return bool(NAME.match(name)) and (self.root / name).is_dir()

    def open(self, name: str | None, create_if_missing: bool) -> str:
        if name is None:
            name = f"ephemeral-{secrets.token_hex(8)}"
            create_if_missing = True
        if not NAME.match(name):
            raise Invalid(f"invalid volume name {name!r}: letters, digits, '.', '_' and '-' (at most 64)")
        path = self.root / name
        if not path.is_dir():
            if not create_if_missing:
                raise NotFound(f"volume {name}")
            path.mkdir()
        return name

    def delete(self, name: str) -> None:
        shutil.rmtree(self.dir(name))

    def names(self) -> list[dict[str, Any]]:
        return [{"name": p.name, "created_at": p.stat().st_ctime} for p in sorted(self.root.iterdir()) if p.is_dir()]

    def resolve(self, name: str, path: str) -> Path:
        """``path`` inside the volume; refuses anything that escapes it."""
        root = self.dir(name).resolve()
        target = (root / path.lstrip("/")).resolve()
        if target != root and root not in target.parents:
            raise Invalid(f"path {path!r} leaves the volume")
        return target

    def listdir(self, name: str, path: str, recursive: bool) -> list[dict[str, Any]]:
        base = self.dir(name).resolve()
        target = self.resolve(name, path)
        if not target.exists():
            raise NotFound(f"{path} in volume {name}")
        if target.is_file():
            candidates = [target]
        else:
            candidates = sorted(target.rglob("*") if recursive else target.iterdir())
        return [
            {"path": str(p.relative_to(base)), "type": "directory" if p.is_dir() else "file",
             "mtime": p.stat().st_mtime, "size": p.stat().st_size}
            for p in candidates
        ]  # fmt: skip

    def read(self, name: str, path: str) -> bytes:
        target = self.resolve(name, path)
        if not target.is_file():
            raise NotFound(f"{path} in volume {name}")
        return target.read_bytes()

    def write(self, name: str, path: str, data: bytes) -> None:
        target = self.resolve(name, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{time.monotonic_ns()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # readers see the old file or the new one, never half of it

    def remove(self, name: str, path: str, recursive: bool) -> None:
        target = self.resolve(name, path)
        if not target.exists():
            raise NotFound(f"{path} in volume {name}")
        if target.is_dir():
            if not recursive and any(target.iterdir()):
                raise Invalid(f"{path} is a non-empty directory: pass recursive=True")
            shutil.rmtree(target)
        else:
            target.unlink()

    def copy(self, name: str, sources: list[str], destination: str) -> None:
        dest = self.resolve(name, destination)
        for source in sources:
            src = self.resolve(name, source)
            if not src.exists():
                raise NotFound(f"{source} in volume {name}")
            target = dest / src.name if dest.is_dir() or len(sources) > 1 or destination.endswith("/") else dest
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True)
            else:
                shutil.copy2(src, target)
