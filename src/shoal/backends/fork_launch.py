"""A fork server's process, launched: its template, and its start without an event loop.

A fresh server's first container waits for a fork server: its interpreter and imports (~0.1 s). So a server
launches its spare fork server first thing (:func:`launch_early`, from :data:`~shoal.backends.KINDS`'s
``prelaunch``), before its own slow imports, which then run beside it; the local backend's spare
(:meth:`~.fork_server.ForkServers.warm`) adopts that process when its template is the same (:func:`take_early`).
This module imports nothing of the event loop or of the backend's running parts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
from pathlib import Path

import msgspec

log = logging.getLogger("shoal.fork_server")


class Template(msgspec.Struct, frozen=True):
    """How to start one fork server: its command (bwrap's, for a sandboxed layout), environment and directory."""

    app_id: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str | None
    isolate: bool


class Launched(msgspec.Struct, frozen=True):
    """A fork server's process, started, and the server's end of its socket (non-blocking)."""

    proc: subprocess.Popen[bytes]
    sock: socket.socket


def log_name(template: Template) -> str:
    """The file a fork server of ``template`` writes its output to (in the backend's log directory)."""
    return f"fork-server-{template.app_id or 'spare'}-{abs(hash(template)):x}.log"


def launch(template: Template, log_path: Path) -> Launched:
    """Start a fork server's process, without waiting for it.

    Raises:
        OSError: the process could not be started.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = dict(template.env)
    env.update(SHOAL_FORK_SOCKET=str(theirs.fileno()), SHOAL_FORK_ISOLATE="1" if template.isolate else "")
    try:
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                template.argv, env=env, cwd=template.cwd, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, pass_fds=(theirs.fileno(),), start_new_session=True,
            )  # fmt: skip
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    ours.setblocking(False)
    return Launched(proc, ours)


_early: tuple[Template, Launched] | None = None  # launched by launch_early, until a fork server takes it


def launch_early(template: Template, log_dir: Path) -> None:
    """Launch the spare fork server of ``template`` now, for the backend opened later to adopt (a failure is only
    logged: the backend launches its spare itself then)."""
    global _early
    if _early is not None:
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        _early = (template, launch(template, log_dir / log_name(template)))
    except OSError as exc:
        log.warning("the spare fork server did not start early: %s", exc)


def take_early(template: Template) -> Launched | None:
    """The early spare's process when it was launched from ``template``; one launched from another template (the
    backend laid it out differently after all) is stopped, and None is returned."""
    global _early
    if _early is None:
        return None
    (early, launched), _early = _early, None
    if early == template:
        return launched
    log.warning("the spare fork server launched early does not match the backend's layout: it is stopped")
    discard(launched)
    return None


def discard(launched: Launched) -> None:
    """Stop a launched fork server that no one follows (its session: a straggler of a failed bwrap too)."""
    launched.sock.close()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(launched.proc.pid, signal.SIGKILL)
    launched.proc.wait()
