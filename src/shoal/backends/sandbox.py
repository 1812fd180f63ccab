"""The local sandbox: each container in its own mount namespace via bubblewrap (``bwrap``).

Inside: the host's filesystem read-only except the server's state (``$SHOAL_HOME`` and the state directory,
covered by an empty tmpfs), a private ``/tmp`` (where the container unpacks its code), its image, volumes mounted
read-write at the paths the user wrote, ``add_local_dir``/``add_local_file`` mounts read-only. The network and
process ids are shared with the host (containers reach the server on loopback; pids stay meaningful).
Without bwrap (or with ``SHOAL_SANDBOX=off``), containers are plain processes, with one warning; features that
need the sandbox (volumes, mounts) are then refused with a clear error.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..config import settings

log = logging.getLogger("shoal.sandbox")
HIDDEN = {"proc", "dev", "tmp", "sys"}


@functools.lru_cache(maxsize=1)
def bwrap() -> str | None:
    """The bwrap binary when the sandbox is enabled and works here, else None (warned about once)."""
    if settings().sandbox_off:
        return None
    path = shutil.which("bwrap")
    if path is None:
        log.warning("bubblewrap (bwrap) is not installed: containers run as plain processes, without a private "
                    "/tmp, and volumes cannot be mounted. Install it: apt-get install bubblewrap")  # fmt: skip
        return None
    probe = subprocess.run([path, "--ro-bind", "/", "/", "--dev", "/dev", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        log.warning("bubblewrap cannot create namespaces here (%s): containers run as plain processes",
                    probe.stderr.strip())  # fmt: skip
        return None
    return path


def _runtime_paths() -> list[str]:
    """Directories under /tmp that the container's interpreter needs: its prefix, site-packages, Shoal's code."""
    import site
    import sys

    import shoal

    candidates = {sys.prefix, sys.base_prefix, str(Path(shoal.__file__).resolve().parent.parent)}
    candidates.update(site.getsitepackages())
    candidates.update(p for p in sys.path if p)
    paths = sorted(str(Path(p).resolve()) for p in candidates if p and Path(p).exists())
    under_tmp = [p for p in paths if p.startswith("/tmp/")]  # never /tmp itself: it stays private and writable
    return [p for p in under_tmp if not any(p != q and p.startswith(q + "/") for q in under_tmp)]


def _in_tmp(path: str) -> bool:
    return path == "/tmp" or path.startswith("/tmp/")


def _mount_points_parent(target: str) -> str | None:
    """The host folder a bind at ``target`` needs a mount point in, when the sandbox shows it read-only."""
    path = Path(target)
    if path.exists() or _in_tmp(target):
        return None
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    return None if parent == Path("/") or _in_tmp(str(parent)) else str(parent)


def _mount_point_parents(targets: list[str], covered: list[str]) -> list[str]:
    """Existing host folders (bound read-only) in which a bind target does not exist yet (``/root/src`` of
    ``add_local_dir``): each becomes a tmpfs with its own entries bound back in, so that the mount point can be
    made. Folders under a covered (tmpfs) one need nothing."""
    found = {p for p in map(_mount_points_parent, targets) if p is not None}
    return sorted(p for p in found if not any(p == c or p.startswith(c + "/") for c in covered))


def wrap(
    command: list[str], *, rw: list[tuple[str, str]], ro: list[tuple[str, str]], workdir: str | None,
    hidden: Sequence[str] = (),
) -> list[str]:  # fmt: skip
    """``command`` inside a bwrap sandbox with these read-write and read-only binds (host path, sandbox path).

    ``hidden`` directories (the server's state) are covered by an empty tmpfs: nothing under them can be read
    or written from inside, except what a later bind (an image, a volume) exposes on purpose.
    """
    binary = bwrap()
    assert binary is not None
    args = [binary, "--die-with-parent"]
    for entry in sorted(Path("/").iterdir()):
        if entry.name in HIDDEN:
            continue
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry), str(entry)]
        else:
            args += ["--ro-bind", str(entry), str(entry)]
    args += ["--dev", "/dev", "--proc", "/proc", "--ro-bind", "/sys", "/sys", "--tmpfs", "/tmp"]
    for path in _runtime_paths():  # Python and Shoal itself may live under the hidden /tmp (a venv, a checkout)
        args += ["--ro-bind", path, path]
    covered = [p for p in sorted({str(Path(h).resolve()) for h in hidden}) if Path(p).is_dir() and not _in_tmp(p)]
    covered = [p for p in covered if not any(p.startswith(q + "/") for q in covered)]  # the outermost ones
    for path in covered:  # under /tmp is private already
        args += ["--tmpfs", path]
    for folder in _mount_point_parents([t for _, t in ro + rw], covered):
        args += ["--tmpfs", folder]  # writable until the binds are made; its own entries bound back in
        for entry in sorted(Path(folder).iterdir()):
            args += ["--symlink", os.readlink(entry), str(entry)] if entry.is_symlink() else ["--ro-bind", str(entry),
                                                                                               str(entry)]  # fmt: skip
        covered.append(folder)
    for source, target in ro:
        args += ["--ro-bind", source, target]
    for source, target in rw:
        args += ["--bind", source, target]
    for path in covered:  # read-only once the binds under it (an image, a volume) have their mount points
        args += ["--remount-ro", path]
    cwd = workdir or os.getcwd()
    if cwd.startswith("/tmp") and not any(cwd.startswith(t) for _, t in rw + ro):
        cwd = "/"  # the host's /tmp is not visible inside
    return args + ["--chdir", cwd, "--"] + command
