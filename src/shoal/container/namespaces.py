"""A forked container's own namespaces, made from inside the fork server's sandbox (Linux system calls via ctypes).

The fork server (:mod:`shoal.container.zygote`) runs in one bubblewrap sandbox; every container it forks then
gets what bwrap would have given it, by the same kernel means and in this order:

1. :func:`enter` (in the container's keeper, as the sandbox's unprivileged user): a new user namespace mapping
   that user to itself (its capabilities count inside it only, and every mount it inherits is locked: nothing
   bwrap covered or made read-only can be uncovered), a mount namespace with a fresh, size-bounded ``/tmp``, a
   pid namespace and an IPC namespace;
2. :func:`become_init` (in the namespace's first process): its own ``/proc``, which lists the container's
   processes only, then every capability dropped and ``no_new_privs`` set, before any user code.

A container so made sees neither the fork server nor the other containers it forked: not their processes, their
``/proc`` entries, their ``/tmp`` nor their environment.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522


class NamespaceError(OSError):
    """A namespace step the kernel refused (the fork server then is not used: containers start afresh)."""


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise NamespaceError(errno, f"{what}: {os.strerror(errno)}")


def die_with_parent(signal_number: int) -> None:
    """Be sent ``signal_number`` when the parent process ends (``PR_SET_PDEATHSIG``)."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def enter(tmp_mib: int) -> None:
    """Leave the fork server's namespaces: own user, mount, pid (for the next child) and IPC namespaces, and a
    private ``/tmp`` of at most ``tmp_mib`` MiB, in which what the sandbox bound under ``/tmp`` (Python or Shoal
    installed there, a mount or volume the app put there) is bound again."""
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC), "unshare")
    # opened in the new namespace (a bind's source must be a mount of it), before the new /tmp hides them
    kept = {point: os.open(point, os.O_PATH | os.O_CLOEXEC) for point in mounts_under("/tmp")}
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    options = f"size={tmp_mib << 20},mode=1777".encode()
    _check(_libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, options), "mount tmpfs /tmp")
    for point, fd in kept.items():
        _mount_point(point, directory=os.path.isdir(f"/proc/self/fd/{fd}"))
        source = f"/proc/self/fd/{fd}".encode()  # the old mount, which the new /tmp hides (flags kept: read-only)
        _check(_libc.mount(source, point.encode(), None, MS_BIND | MS_REC, None), f"mount --rbind {point}")
        os.close(fd)


def mounts_under(folder: str) -> list[str]:
    """The outermost mount points strictly under ``folder``, from ``/proc/self/mountinfo``."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")  # octal escapes: \040 is a space
            if point.startswith(folder + "/"):
                points.append(point)
    return [p for p in points if not any(p != q and p.startswith(q + "/") for q in points)]


def _mount_point(path: str, directory: bool) -> None:
    parent = os.path.dirname(path)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    if directory:
        os.makedirs(path, mode=0o755, exist_ok=True)
    else:
        open(path, "a").close()


def become_init() -> None:
    """In the pid namespace's first process: mount its ``/proc``, then give up every capability for good."""
    _check(_libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount proc /proc")
    drop_capabilities()


def drop_capabilities() -> None:
    """No capabilities, now or after any ``exec``: bounding and ambient sets cleared, ``no_new_privs`` set."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"prctl(PR_CAPBSET_DROP, {cap})")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: twice (64 bits), all zero
    _check(_libc.capset(header, data), "capset")
