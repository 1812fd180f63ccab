"""Volumes on the local backend: one directory per volume under the server's state, mounted into containers.

Writes are visible to every container as soon as they reach the disk, so ``commit``/``reload`` have nothing to
do here; the SDK keeps them (as no-ops) so code written for Modal stays correct on a backend that syncs.

Containers write into their volumes, so the server treats a volume's tree as hostile (docs/security.md):
- every operation walks the path one name at a time from the volume's own directory with ``O_NOFOLLOW``, and works
  relative to directory descriptors, so a symbolic link planted by a container is never followed out of the
  volume, and swapping a folder for a link between a check and a use gains nothing;
- a link met as the last name is an entry of its own: listed as ``symlink``, copied as a link, removed as a link,
  replaced (not written through) by a write; reading one is refused;
- uploads are streamed into ``.uploads/`` beside the volumes and renamed into place whole (removed at start when
  a server died mid-upload), so a reader sees the old file or the new one and memory stays flat.
Paths with a NUL byte, a name over 255 bytes or over 4,096 bytes in all are refused, as are ``..`` above the root.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..backends import sandbox
from .errors import Invalid, NotFound

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
UPLOADS = ".uploads"  # not a volume name (names start with a letter or digit)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_PATH = 4096
MAX_NAME = 255
CHUNK = 1 << 20


def split_path(path: str) -> list[str]:
    """The names of a path inside a volume ('' or '/' is the root); raises Invalid for what no file system takes."""
    if "\0" in path:
        raise Invalid("a volume path cannot contain a NUL byte")
    if len(path.encode()) > MAX_PATH:
        raise Invalid(f"a volume path is at most {MAX_PATH} bytes")
    names: list[str] = []
    for name in path.split("/"):
        if name == "..":
            if not names:
                raise Invalid(f"path {path!r} leaves the volume")
            names.pop()
        elif name not in ("", "."):
            names.append(name)
    for name in names:
        if len(name.encode()) > MAX_NAME:
            raise Invalid(f"a name in a volume path is at most {MAX_NAME} bytes: {name[:40]}...")
    return names


def open_volumes(state_dir: Path, shared_dir: Path | None = None) -> VolumeStore:
    """A server's private directories (its state, and the shared one of blobs, volumes and the secrets key: 0700,
    for the servers alone) and its volume store in the shared one (default: the state directory)."""
    shared = shared_dir or state_dir
    for folder in {state_dir, shared}:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
    return VolumeStore(shared / "volumes", owner=sandbox.user())  # containers write in them


class VolumeStore:
    """Volumes as folders under ``root``; what the server creates in them belongs to ``owner`` (uid, gid) when
    given: the sandbox's user, when containers run as another user than the server (``sandbox.user``)."""

    def __init__(self, root: Path, owner: tuple[int, int] | None = None) -> None:
        self.root = root
        self.owner = owner
        self.root.mkdir(parents=True, exist_ok=True)
        uploads = self.root / UPLOADS
        shutil.rmtree(uploads, ignore_errors=True)  # uploads of a server that died mid-way
        uploads.mkdir(exist_ok=True)
        if owner is not None:
            self._hand_over(owner)

    def _hand_over(self, owner: tuple[int, int]) -> None:
        """Volumes written before containers ran as ``owner`` (root's, from an older server) become theirs, once:
        a volume whose folder ``owner`` already has is left alone."""
        for folder in self.root.iterdir():
            if not NAME.match(folder.name) or folder.is_symlink() or folder.stat().st_uid == owner[0]:
                continue
            for parent, dirs, files in os.walk(folder):  # never follows links; lchown changes a link itself
                for name in dirs + files:
                    os.lchown(os.path.join(parent, name), *owner)
            os.lchown(folder, *owner)

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
            name = f"ephemeral-{os.urandom(8).hex()}"
            create_if_missing = True
        if not NAME.match(name):
            raise Invalid(f"invalid volume name {name!r}: letters, digits, '.', '_' and '-' (at most 64)")
        path = self.root / name
        if not path.is_dir():
            if not create_if_missing:
                raise NotFound(f"volume {name}")
            path.mkdir()
            if self.owner:
                os.chown(path, *self.owner)
        return name

    def delete(self, name: str) -> None:
        shutil.rmtree(self.dir(name))  # rmtree never follows links (it removes them)

    def names(self) -> list[dict[str, Any]]:
        found = [p for p in sorted(self.root.iterdir()) if p.is_dir() and NAME.match(p.name)]
        return [{"name": p.name, "created_at": p.stat().st_ctime} for p in found]

    # ---- walking without following links --------------------------------------------------------

    @contextlib.contextmanager
    def _folder(self, name: str, names: list[str], create: bool = False) -> Iterator[int]:
        """A descriptor of the folder ``names`` inside volume ``name``, reached without following any link."""
        fd = os.open(self.dir(name), DIR_FLAGS)
        try:
            for part in names:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                        self._own(part, fd)
                try:
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError as exc:
                    raise NotFound(f"/{'/'.join(names)} in volume {name}") from exc
                except (NotADirectoryError, OSError) as exc:  # a file, or a link (ELOOP): not a folder to enter
                    raise Invalid(f"/{'/'.join(names)} in volume {name}: {part!r} is not a folder") from exc
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _entry(self, name: str, path: str, create_parents: bool = False) -> Iterator[tuple[int, str]]:
        """(descriptor of the parent folder, last name) of ``path``; the root is (its own descriptor, '.')."""
        names = split_path(path)
        with self._folder(name, names[:-1], create_parents) as fd:
            yield fd, names[-1] if names else "."

    def _own(self, entry: str, fd: int) -> None:
        if self.owner:
            os.chown(entry, *self.owner, dir_fd=fd, follow_symlinks=False)

    @staticmethod
    def _lstat(fd: int, last: str) -> os.stat_result | None:
        try:
            return os.stat(last, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    # ---- operations -----------------------------------------------------------------------------

    def listdir(self, name: str, path: str, recursive: bool) -> list[dict[str, Any]]:
        names = split_path(path)
        with self._entry(name, path) as (fd, last):
            st = self._lstat(fd, last)
            if st is None:
                raise NotFound(f"{path} in volume {name}")
            if not stat.S_ISDIR(st.st_mode):
                return [_described("/".join(names), st)]
        with self._folder(name, names) as fd:
            return list(_walk(fd, "/".join(names), recursive))

    def read(self, name: str, path: str) -> bytes:
        with self._entry(name, path) as (fd, last):
            try:
                file = os.open(last, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError as exc:
                raise NotFound(f"{path} in volume {name}") from exc
            except OSError as exc:
                raise Invalid(f"{path} in volume {name} is not a file (a link or a folder)") from exc
            with os.fdopen(file, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise NotFound(f"{path} in volume {name} is not a file")
                return f.read()

    def write(self, name: str, path: str, data: bytes) -> None:
        upload = self.upload(name, path)
        upload.write(data)
        upload.commit()

    def upload(self, name: str, path: str) -> Upload:
        """A file being written at ``path``: stream into it with ``write``, publish it whole with ``commit``."""
        names = split_path(path)
        if not names:
            raise Invalid("write to a file path in the volume, not its root")
        self.dir(name)
        return Upload(self, name, path)

    def _publish(self, staged: Path, name: str, path: str) -> None:
        with self._entry(name, path, create_parents=True) as (fd, last):
            st = self._lstat(fd, last)
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise Invalid(f"{path} in volume {name} is a folder")
            uploads = os.open(self.root / UPLOADS, DIR_FLAGS)
            try:  # a rename replaces a link at ``last`` itself: nothing is written through it
                os.replace(staged.name, last, src_dir_fd=uploads, dst_dir_fd=fd)
            finally:
                os.close(uploads)

    def remove(self, name: str, path: str, recursive: bool) -> None:
        if not split_path(path):
            raise Invalid("the root of a volume cannot be removed: delete the volume (shoal volume delete)")
        with self._entry(name, path) as (fd, last):
            st = self._lstat(fd, last)
            if st is None:
                raise NotFound(f"{path} in volume {name}")
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(last, dir_fd=fd)
                return
            child = os.open(last, DIR_FLAGS, dir_fd=fd)
            try:
                if not recursive and os.listdir(child):
                    raise Invalid(f"{path} is a non-empty directory: pass recursive=True")
                _empty(child)
            finally:
                os.close(child)
            os.rmdir(last, dir_fd=fd)

    def copy(self, name: str, sources: list[str], destination: str) -> None:
        dest_names = split_path(destination)
        with self._entry(name, destination) as (fd, last):
            st = self._lstat(fd, last)
            into = (st is not None and stat.S_ISDIR(st.st_mode)) or len(sources) > 1 or destination.endswith("/")
        for source in sources:
            src_names = split_path(source)
            if not src_names:
                raise Invalid("copy files or folders of the volume, not its root")
            target = [*dest_names, src_names[-1]] if into else dest_names
            if target[: len(src_names)] == src_names:
                raise Invalid(f"cannot copy {source} into itself ({destination})")
            with self._entry(name, source) as (src_fd, src_last):
                st = self._lstat(src_fd, src_last)
                if st is None:
                    raise NotFound(f"{source} in volume {name}")
                with self._folder(name, target[:-1], create=True) as dst_fd:
                    _copy(src_fd, src_last, st, dst_fd, target[-1], self._own)


class Upload:
    """A file streamed into ``.uploads/`` and renamed into the volume whole (or dropped)."""

    def __init__(self, store: VolumeStore, name: str, path: str) -> None:
        self.store, self.name, self.path = store, name, path
        self.staged = store.root / UPLOADS / f"{os.urandom(12).hex()}.tmp"
        self._file = open(self.staged, "xb")  # noqa: SIM115 - closed by commit() or abort()
        if store.owner:
            os.fchown(self._file.fileno(), *store.owner)

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)

    def commit(self) -> None:
        try:
            self._file.close()
            self.store._publish(self.staged, self.name, self.path)
        finally:
            self.staged.unlink(missing_ok=True)

    def abort(self) -> None:
        self._file.close()
        self.staged.unlink(missing_ok=True)


def _described(path: str, st: os.stat_result) -> dict[str, Any]:
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
    return {"path": path, "type": kind, "mtime": st.st_mtime, "size": st.st_size}


def _walk(fd: int, prefix: str, recursive: bool) -> Iterator[dict[str, Any]]:
    """The entries of the folder open at ``fd``, sorted, (and below it), never entering a link."""
    with os.scandir(fd) as found:
        entries = sorted(found, key=lambda e: e.name)
    for entry in entries:
        path = f"{prefix}/{entry.name}" if prefix else entry.name
        st = entry.stat(follow_symlinks=False)
        yield _described(path, st)
        if recursive and stat.S_ISDIR(st.st_mode):
            child = os.open(entry.name, DIR_FLAGS, dir_fd=fd)
            try:
                yield from _walk(child, path, recursive)
            finally:
                os.close(child)


def _empty(fd: int) -> None:
    """Remove everything inside the folder open at ``fd`` (links removed, never followed)."""
    for entry in os.scandir(fd):
        if entry.is_dir(follow_symlinks=False):
            child = os.open(entry.name, DIR_FLAGS, dir_fd=fd)
            try:
                _empty(child)
            finally:
                os.close(child)
            os.rmdir(entry.name, dir_fd=fd)
        else:
            os.unlink(entry.name, dir_fd=fd)


def _copy(src_fd: int, src: str, st: os.stat_result, dst_fd: int, dst: str, own: Callable[[str, int], None]) -> None:
    """Copy the entry ``src`` (of the folder at ``src_fd``) to ``dst`` (in ``dst_fd``): links as links; ``own``
    gives each new entry its owner."""
    if stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst, dir_fd=dst_fd)
        os.symlink(os.readlink(src, dir_fd=src_fd), dst, dir_fd=dst_fd)
        own(dst, dst_fd)
    elif stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileExistsError):
            os.mkdir(dst, 0o755, dir_fd=dst_fd)
            own(dst, dst_fd)
        src_child = os.open(src, DIR_FLAGS, dir_fd=src_fd)
        try:
            dst_child = os.open(dst, DIR_FLAGS, dir_fd=dst_fd)
            try:
                with os.scandir(src_child) as entries:
                    for entry in entries:
                        st_entry = entry.stat(follow_symlinks=False)
                        _copy(src_child, entry.name, st_entry, dst_child, entry.name, own)
            finally:
                os.close(dst_child)
        finally:
            os.close(src_child)
    elif stat.S_ISREG(st.st_mode):
        reader = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
        try:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISLNK(os.stat(dst, dir_fd=dst_fd, follow_symlinks=False).st_mode):
                    os.unlink(dst, dir_fd=dst_fd)  # replace a link at the target, never write through it
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(dst, flags, st.st_mode & 0o777, dir_fd=dst_fd), "wb") as writer:
                while chunk := os.read(reader, CHUNK):
                    writer.write(chunk)
            own(dst, dst_fd)
        finally:
            os.close(reader)
