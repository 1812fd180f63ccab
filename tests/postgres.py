"""A private PostgreSQL server for the tests: the distribution's binaries, a temporary data directory, a free
loopback port, stopped at the end of the session. Each test gets a database of its own.

Where PostgreSQL is not installed the tests that need it skip (by hand) or fail (in CI, which installs it).
``SHOAL_TEST_POSTGRES=postgresql://...`` points the tests at a server of your own instead (it must let the user
create databases).
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

_counter = itertools.count()


def binaries() -> Path | None:
    """The folder of ``pg_ctl`` and ``initdb``: on the PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` user (or ``nobody``)."""
    if os.geteuid() != 0:
        return command
    user = "postgres" if subprocess.run(["id", "postgres"], capture_output=True).returncode == 0 else "nobody"
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]


class PostgresServer:
    """One PostgreSQL server started for the session."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="shoal-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.dir.chmod(0o777)  # the server's user writes here (the socket, the log)
        if os.geteuid() == 0:
            user = "postgres" if subprocess.run(["id", "postgres"], capture_output=True).returncode == 0 else "nobody"
            shutil.chown(self.dir, user)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "shoal", "--no-locale",
                  "-E", "UTF8", "--no-sync")  # fmt: skip
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options, "-w",
                  "start")  # fmt: skip

    def _run(self, *command: str) -> None:
        done = subprocess.run(_as_server_user(list(command)), capture_output=True, text=True, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stdout}{done.stderr}")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://shoal@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def drop(self, dsn: str) -> None:
        """Remove a database :meth:`new_database` made (its connections closed)."""
        _drop(self.dsn(), dsn)

    def stop(self) -> None:
        subprocess.run(_as_server_user([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
                       capture_output=True, cwd=self.dir)  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)


class ExternalServer:
    """A server of the user's own (``SHOAL_TEST_POSTGRES``)."""

    def __init__(self, dsn: str) -> None:
        self.base = dsn

    def new_database(self) -> str:
        import psycopg

        name = f"shoal_test_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.base.rsplit("/", 1)[0] + "/" + name

    def drop(self, dsn: str) -> None:
        _drop(self.base, dsn)

    def stop(self) -> None:
        pass


def _drop(admin: str, dsn: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {dsn.rsplit('/', 1)[1]} WITH (FORCE)")


def unavailable(reason: str) -> None:
    """Skip (run by hand) or fail (in CI, which installs PostgreSQL) a test that needs PostgreSQL."""
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI (.ci/run installs it): {reason}")
    pytest.skip(f"{reason} (apt-get install postgresql; pip install -e '.[test]')")


_shared: list[PostgresServer | ExternalServer] = []


def shared() -> PostgresServer | ExternalServer:
    """The server of this test process, started on first use and stopped when the process exits; or a skip/fail
    saying what is missing."""
    if not _shared:
        _shared.append(start())
        atexit.register(_shared[0].stop)
    return _shared[0]


def start() -> PostgresServer | ExternalServer:
    """A server, or a skip/fail saying what is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed")
    if os.environ.get("SHOAL_TEST_POSTGRES"):
        return ExternalServer(os.environ["SHOAL_TEST_POSTGRES"])
    bin_dir = binaries()
    if bin_dir is None:
        unavailable("PostgreSQL is not installed")
        raise AssertionError("unreachable")
    return PostgresServer(bin_dir)
