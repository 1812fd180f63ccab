"""The standing server of a ``$SHOAL_HOME`` as a background daemon: ``shoal server start|stop|status``, auto-start.

One standing server per home, found through its record in ``$SHOAL_HOME/servers`` (see ``_servers``), never by
probing a well-known port: another home's server is never used by mistake. Its log is ``$SHOAL_HOME/server.log``
and its state ``$SHOAL_HOME/server``. It listens on 127.0.0.1:7811 by default, or on a free port when 7811 is taken
(by another home's server); ``--port N`` insists on N.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from . import _servers
from .client import _healthy
from .config import DEFAULT_PORT, settings
from .exception import ConnectionError

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class DaemonStatus(msgspec.Struct, frozen=True):
    running: bool
    pid: int | None
    url: str | None
    log_file: Path
    standby: bool = False  # waiting to take over from the active server over its PostgreSQL store


def _log_file() -> Path:
    return settings().home / "server.log"


def status() -> DaemonStatus:
    """The standing server of this home, as its record and a health check say."""
    record = _servers.standing()
    if record is None:
        standby = _servers.standby()
        if standby is not None:
            return DaemonStatus(False, standby.pid, standby.url, _log_file(), standby=True)
        return DaemonStatus(False, None, None, _log_file())
    return DaemonStatus(_healthy(record.url), record.pid, record.url, _log_file())


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start(
    host: str = "127.0.0.1", port: int | None = None, token: str | None = None, backend: str = "local",
    ray_address: str = "auto", store: str | None = None, shared_dir: str | None = None,
) -> DaemonStatus:  # fmt: skip
    """Start this home's standing server unless it runs; returns once it is healthy, or once it stands by (another
    server is active over its PostgreSQL ``store``).

    Raises:
        ConnectionError: it exited at start (e.g. ``port`` is taken) or did not answer in time.
    """
    current = status()
    if current.running or current.standby:
        return current
    log_file = _log_file()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    chosen = port if port is not None else (DEFAULT_PORT if _port_free(host, DEFAULT_PORT) else 0)
    cmd = [sys.executable, "-m", "shoal.server", "--standing", "--host", host, "--port", str(chosen),
           "--state-dir", str(settings().home / "server")]  # fmt: skip
    cmd += ["--backend", backend, "--ray-address", ray_address]
    env = {k: v for k, v in os.environ.items() if k != "SHOAL_TOKEN"}
    if token:  # through the environment: a command line is anyone's to read (ps, /proc/PID/cmdline)
        env["SHOAL_TOKEN"] = token
    if store:  # a database URL may hold a password: the environment too
        env["SHOAL_STORE"] = store
    if shared_dir:
        env["SHOAL_SHARED_DIR"] = shared_dir
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                                env=env)  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConnectionError(
                f"The Shoal server exited at start (code {proc.returncode}); the end of {log_file} says why"
                + (f" (is port {port} taken? pick another with --port, or --port 0 for any)" if port else "")
            )
        record = next((r for r in _servers.live() if r.pid == proc.pid), None)
        if record is not None and record.kind == "standby":
            return DaemonStatus(False, proc.pid, record.url, log_file, standby=True)
        if record is not None and _healthy(record.url, 0.5):
            return DaemonStatus(True, proc.pid, record.url, log_file)
        time.sleep(0.05)
    raise ConnectionError(f"The Shoal server did not answer within {START_TIMEOUT:g}s; see {log_file}")


def stop(timeout: float = STOP_TIMEOUT) -> bool:
    """Stop this home's standing server, or the one standing by (SIGTERM; it exits in about a second); False when
    none was running."""
    record = _servers.standing() or _servers.standby()
    if record is None:
        return False
    os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(record.pid, 0)
        except OSError:
            return True
        time.sleep(0.05)
    os.kill(record.pid, signal.SIGKILL)  # a last resort: a graceful stop takes about a second
    return True


def standing_url() -> str:
    """The server for work that outlives this process: SHOAL_SERVER_URL, else this home's standing server
    (started in the background when none runs)."""
    cfg = settings()
    if cfg.server_url:
        return cfg.server_url
    current = status()
    if current.running and current.url:
        return current.url
    started = start()
    if started.url:  # said in one line: it outlives this command, and how to stop it
        print(f"✓ Started this home's background Shoal server at {started.url} (log {started.log_file}); it keeps "
              "running: stop it with `shoal server stop`.", file=sys.stderr)  # fmt: skip
    return started.url or ""
