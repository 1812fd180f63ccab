"""The standing local server as a background daemon: ``shoal server start|stop|status`` and auto-start.

Its pid file and log live under ``$SHOAL_HOME`` (``server.pid``, ``server.log``); its state under
``$SHOAL_HOME/server``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .client import _healthy
from .config import DEFAULT_PORT, settings
from .exception import ConnectionError

START_TIMEOUT = 20.0


@dataclass(frozen=True)
class DaemonStatus:
    running: bool
    pid: int | None
    url: str
    log_file: Path


def _paths() -> tuple[Path, Path]:
    home = settings().home
    return home / "server.pid", home / "server.log"


def _read_pid() -> int | None:
    pid_file, _ = _paths()
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def status(port: int = DEFAULT_PORT) -> DaemonStatus:
    url = f"http://127.0.0.1:{port}"
    pid = _read_pid()
    return DaemonStatus(pid is not None and _healthy(url), pid, url, _paths()[1])


def start(host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None) -> DaemonStatus:
    """Start the background server unless one already answers; returns once it is healthy."""
    url = f"http://127.0.0.1:{port}" if host in ("127.0.0.1", "0.0.0.0", "localhost") else f"http://{host}:{port}"
    if _healthy(url):
        return DaemonStatus(True, _read_pid(), url, _paths()[1])
    pid_file, log_file = _paths()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "shoal.server", "--host", host, "--port", str(port),
           "--state-dir", str(settings().home / "server")]  # fmt: skip
    if token:
        cmd += ["--token", token]
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file.write_text(f"{proc.pid} {url}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConnectionError(f"The Shoal server exited at start (code {proc.returncode}); see {log_file}")
        if _healthy(url, 0.5):
            return DaemonStatus(True, proc.pid, url, log_file)
        time.sleep(0.1)
    raise ConnectionError(f"The Shoal server did not answer within {START_TIMEOUT:g}s; see {log_file}")


def stop(timeout: float = 15.0) -> bool:
    """Stop the background server; False when none was running."""
    pid = _read_pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    _paths()[0].unlink(missing_ok=True)
    return True


def standing_url() -> str:
    """The server for work that outlives this process: SHOAL_SERVER_URL, else the local daemon (auto-started)."""
    cfg = settings()
    if cfg.server_url:
        return cfg.server_url
    if _healthy(cfg.default_url, 0.3):
        return cfg.default_url
    return start().url
