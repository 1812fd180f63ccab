"""Which servers run for this ``$SHOAL_HOME``: one record file per live server, written by the server itself.

Every server process (standing, embedded, foreground or a test's) writes ``$SHOAL_HOME/servers/<pid>.json`` once it
listens: its URL, pid, kind, and the credential its clients present. The directory is private to the user
(0700, files 0600), and invisible inside sandboxed containers, so:

* a client finds the server of *its* home (never whatever answers on a well-known port), and
* a server started without ``--token`` still requires a credential on every client route: its *local token*,
  which only processes that can read this home have. Containers get their own container token instead.

Records of dead processes are ignored and removed when seen.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
from msgspec.structs import asdict

from .config import settings


class ServerRecord(msgspec.Struct, frozen=True):
    """One live server of this home."""

    url: str
    pid: int
    kind: str  # "standing" | "embedded" | "foreground" | "process" | "standby" (not serving yet)
    token: str | None  # the local token clients present (None when the server has an operator-set token)
    state_dir: str


def _dir(home: Path | None = None) -> Path:
    return (home or settings().home) / "servers"


def write(record: ServerRecord) -> Path:
    """Publish this server's record (owner-only)."""
    folder = _dir()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = folder / f"{record.pid}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(record), f)
    os.replace(tmp, path)
    return path


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (killed, not yet reaped by its parent) serves nobody."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def live() -> list[ServerRecord]:
    """Records of the servers of this home whose process is alive, oldest pid first."""
    out = []
    for path in sorted(_dir().glob("*.json")):
        try:
            record = ServerRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if _alive(record.pid):
            out.append(record)
        else:
            path.unlink(missing_ok=True)
    return out


def standing() -> ServerRecord | None:
    """The standing server of this home, if one is running."""
    return next((r for r in live() if r.kind == "standing"), None)


def standby() -> ServerRecord | None:
    """This home's server standing by (another is active over its PostgreSQL store), if one is waiting."""
    return next((r for r in live() if r.kind == "standby"), None)


_found: dict[tuple[str, str], ServerRecord] = {}


def token_for(url: str) -> str | None:
    """The local token of this home's server at ``url`` (None if none of this home's servers is there).

    The record found is remembered while its process lives (a call costs a signal-0, not a directory scan); a
    restarted server keeps its local token with its state, so a client outlives the restart either way.
    """
    url = url.rstrip("/")
    key = (str(settings().home), url)
    known = _found.get(key)
    if known is None or not _alive(known.pid):
        fresh = next((r for r in live() if r.url == url), None)
        if fresh is not None:
            _found[key] = known = fresh
        # else: down for now; a restart of that server keeps its token, so the last one found still holds
    return known.token if known is not None else None
