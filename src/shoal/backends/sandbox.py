"""The local sandbox: each container in its own mount, pid and IPC namespaces via bubblewrap (``bwrap``).

Inside: the host's filesystem read-only except the server's state (``$SHOAL_HOME`` and the state directory,
covered by an empty tmpfs), a private, size-bounded ``/tmp`` (where the container unpacks its code), its image,
volumes mounted read-write at the paths the user wrote, ``add_local_dir``/``add_local_file`` mounts read-only.

Who the container is (docs/security.md):
- no capabilities (``--cap-drop ALL``), in a user namespace;
- an unprivileged user: the server's own user when it runs as one, and ``nobody`` when the server runs as root
  (so files of root's stay out of reach even where the sandbox shows them; see :func:`_namespaces`);
- its own pid namespace and ``/proc``: it sees its own processes only (not the server's, nor other containers'),
  and every process it starts, double-forked or not, ends with it (the namespace's first process dies with bwrap).
The network is shared with the host (containers reach the server on loopback).
Without bwrap (or with ``SHOAL_SANDBOX=off``), containers are plain processes, with one warning; features that
need the sandbox (volumes, mounts) are then refused with a clear error.
"""

from __future__ import annotations

import functools
import logging
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..config import settings

log = logging.getLogger("shoal.sandbox")
HIDDEN = {"proc", "dev", "tmp", "sys"}


_probing: subprocess.Popen[str] | None = None  # bubblewrap's probe, started early (start_probe)


def _probe(path: str) -> subprocess.Popen[str]:
    return subprocess.Popen([path, "--unshare-pid", "--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev",
                             "--proc", "/proc", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)  # fmt: skip


def start_probe() -> None:
    """Start finding out whether bubblewrap works here, without waiting (~10 ms): :func:`bwrap` takes the
    answer. A server's start calls it before its slow imports."""
    global _probing
    path = None if settings().sandbox_off else shutil.which("bwrap")
    if path is not None and _probing is None and bwrap.cache_info().currsize == 0:
        try:
            _probing = _probe(path)
        except OSError:
            _probing = None  # bwrap() tries again, and says why


@functools.lru_cache(maxsize=1)
def bwrap() -> str | None:
    """The bwrap binary when the sandbox is enabled and works here, else None (warned about once)."""
    global _probing
    if settings().sandbox_off:
        return None
    path = shutil.which("bwrap")
    if path is None:
        log.warning("bubblewrap (bwrap) is not installed: containers run as plain processes, without a private "
                    "/tmp, and volumes cannot be mounted. Install it: apt-get install bubblewrap")  # fmt: skip
        return None
    probe, _probing = _probing or _probe(path), None
    _, stderr = probe.communicate()
    if probe.returncode != 0:
        log.warning("bubblewrap cannot create namespaces here (%s): containers run as plain processes",
                    stderr.strip())  # fmt: skip
        return None
    return path


@functools.lru_cache(maxsize=1)
def user() -> tuple[int, int] | None:
    """The (uid, gid) a sandboxed container runs as when the server is root (``nobody``), else None: the
    server's own (unprivileged) user, mapped into a user namespace by bwrap."""
    if os.geteuid() != 0 or bwrap() is None:
        return None
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _namespaces() -> list[str]:
    """bwrap's options for the container's identity. Run by an ordinary user, bwrap maps that user into a user
    namespace and drops every capability. Run by root, a user namespace would map the container to root outside
    (the owner of root's files): bwrap keeps only what it takes to switch users, and :func:`_as_user` drops to
    ``nobody`` inside, with no capabilities left and no way back (no_new_privs: no setuid binary helps)."""
    common = ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--cap-drop", "ALL"]
    if user() is None:
        return [*common, "--unshare-user"]
    return [*common, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]


# A fork server's sandbox, run by root: bwrap covers parts of /proc read-only, and a /proc with covered parts
# cannot be mounted again in a user namespace (each forked container mounts its own). So bwrap keeps
# CAP_SYS_ADMIN for this one shell, which lifts those covers (they guard against a root that the sandbox's user,
# nobody without capabilities, never is) before setpriv drops every capability for good.
# (One umount for the four: util-linux's goes on past a cover it cannot lift, and each exec is ~2 ms of a cold start.)
UNCOVER_PROC = ["/bin/sh", "-c", 'umount /proc/sys /proc/sysrq-trigger /proc/irq /proc/bus 2>/dev/null; exec "$@"',
                "shoal-fork-server"]  # fmt: skip


def _as_user(command: list[str]) -> list[str]:
    """``command`` run as the sandbox's user, from inside the sandbox (util-linux's ``setpriv``)."""
    found = user()
    if found is None:
        return command
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    return [setpriv, f"--reuid={found[0]}", f"--regid={found[1]}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", "--", *command]  # fmt: skip


def _runtime_candidates() -> list[str]:
    """Directories the container's interpreter needs: its prefix, site-packages, Shoal's code, ``sys.path``."""
    return list(_runtime_candidates_once())


@functools.lru_cache(maxsize=1)
def _runtime_candidates_once() -> tuple[str, ...]:
    """(Found once per process: a server's interpreter and path do not change, and each start would pay ~1 ms.)"""
    import site
    import sys

    import shoal

    candidates = {sys.prefix, sys.base_prefix, str(Path(shoal.__file__).resolve().parent.parent)}
    candidates.update(site.getsitepackages())
    candidates.update(p for p in sys.path if p)
    return tuple(sorted(str(Path(p).resolve()) for p in candidates if p and Path(p).exists()))


def _outermost(paths: list[str]) -> list[str]:
    return [p for p in paths if not any(p != q and p.startswith(q + "/") for q in paths)]


def _runtime_paths() -> list[str]:
    """Runtime directories under /tmp (never /tmp itself: it stays private and writable)."""
    return _outermost([p for p in _runtime_candidates() if p.startswith("/tmp/")])


def _closed_folder(path: str) -> str | None:
    """The outermost folder above ``path`` that others may not enter (``/root`` of a pyenv Python), if any."""
    closed = None
    for folder in reversed([Path(path), *Path(path).parents]):
        try:
            if not folder.stat().st_mode & stat.S_IXOTH:
                closed = str(folder)
                break
        except OSError:
            break
    return closed


def _reopened(program: str, under_tmp: bool = False) -> dict[str, list[str]]:
    """Runtime directories that the sandbox's own user could not enter, by the closed folder above them: each
    folder becomes an empty tmpfs with just those directories bound back in (run by root only). ``program`` is
    the command's executable: its installation (an image's Python, a pyenv one under /root) is one of them.
    ``under_tmp``: those under /tmp too (a container's /tmp is its own, so it has them bound apart)."""
    if user() is None:
        return {}
    candidates = _runtime_candidates()
    if os.path.isabs(program) and os.path.exists(program):
        candidates.append(str(Path(program).resolve().parent.parent))
    found: dict[str, list[str]] = {}
    for path in _outermost(sorted({p for p in candidates if under_tmp or not p.startswith("/tmp/")})):
        closed = _closed_folder(path)
        if closed is not None and closed != path:
            found.setdefault(closed, []).append(path)
    return found


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


def _bind(flag: str, source: str, target: str, fresh: list[str]) -> list[str]:
    """A bind, after the folders on the way to its mount point inside a ``fresh`` (empty) folder are made 0755:
    bwrap would make them 0700, which a container running as ``nobody`` could not walk through."""
    args: list[str] = []
    for root in fresh:
        if target.startswith(root + "/"):
            between = [p for p in reversed(Path(target).parents) if str(p).startswith(root + "/")]
            for step in between:
                args += ["--perms", "0755", "--dir", str(step)]
            break
    return [*args, flag, source, target]


def wrap(
    command: list[str], *, rw: list[tuple[str, str]], ro: list[tuple[str, str]], workdir: str | None,
    hidden: Sequence[str] = (), tmp_mib: int = 1024, fork_server: bool = False, devices: Sequence[str] = (),
) -> list[str]:  # fmt: skip
    """``command`` inside a bwrap sandbox with these read-write and read-only binds (host path, sandbox path).

    ``hidden`` directories (the server's state) are covered by an empty tmpfs: nothing under them can be read
    or written from inside, except what a later bind (an image, a volume) exposes on purpose. The private
    ``/tmp`` holds at most ``tmp_mib`` MiB. Run by root, the command runs as ``nobody`` (:func:`user`).
    ``fork_server``: the command is a fork server (``shoal.container.zygote``), whose containers make their own
    namespaces and ``/proc`` (see :data:`UNCOVER_PROC`). ``devices``: host device nodes passed through (a GPU's).
    """
    binary = bwrap()
    assert binary is not None
    uncover = fork_server and user() is not None
    args = [binary, *_namespaces(), *(["--cap-add", "CAP_SYS_ADMIN"] if uncover else [])]
    for entry in sorted(Path("/").iterdir()):
        if entry.name in HIDDEN:
            continue
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry), str(entry)]
        else:
            args += ["--ro-bind", str(entry), str(entry)]
    args += ["--dev", "/dev", "--proc", "/proc", "--ro-bind", "/sys", "/sys"]
    for node in devices:
        args += ["--dev-bind", node, node]
    args += ["--perms", "1777", "--size", str(tmp_mib * 2**20), "--tmpfs", "/tmp"]
    fresh = ["/tmp"]  # folders that start empty in the sandbox: mount points in them are made here
    for path in _runtime_paths():  # Python and Shoal itself may live under the hidden /tmp (a venv, a checkout)
        args += _bind("--ro-bind", path, path, fresh)
    reopened = _reopened(command[0])
    for folder, paths in reopened.items():  # say /root: nobody may enter it, but the interpreter lives under it
        args += ["--perms", "0755", "--tmpfs", folder]
        fresh.append(folder)
        for path in paths:
            args += _bind("--ro-bind", path, path, fresh)
    covered = [p for p in sorted({str(Path(h).resolve()) for h in hidden}) if Path(p).is_dir() and not _in_tmp(p)]
    covered = [p for p in covered if not any(p.startswith(q + "/") for q in covered)]  # the outermost ones
    for path in covered:  # under /tmp is private already
        args += ["--tmpfs", path]
    covered += list(reopened)
    fresh += covered
    for folder in _mount_point_parents([t for _, t in ro + rw], covered):
        args += ["--tmpfs", folder]  # writable until the binds are made; its own entries bound back in
        for entry in sorted(Path(folder).iterdir()):
            args += ["--symlink", os.readlink(entry), str(entry)] if entry.is_symlink() else ["--ro-bind", str(entry),
                                                                                               str(entry)]  # fmt: skip
        covered.append(folder)
        fresh.append(folder)
    for source, target in ro:
        args += _bind("--ro-bind", source, target, fresh)
    for source, target in rw:
        args += _bind("--bind", source, target, fresh)
    for path in covered:  # read-only once the binds under it (an image, a volume) have their mount points
        args += ["--remount-ro", path]
    cwd = workdir or os.getcwd()
    if cwd.startswith("/tmp") and not any(cwd.startswith(t) for _, t in rw + ro):
        cwd = "/"  # the host's /tmp is not visible inside
    elif user() is not None and _closed_folder(cwd) is not None and not any(cwd.startswith(t) for _, t in rw + ro):
        cwd = "/"  # the sandbox's user may not enter the server's working directory (say /root)
    return args + ["--chdir", cwd, "--"] + (UNCOVER_PROC if uncover else []) + _as_user(command)
