"""PostgreSQL as the store, as an operator runs it: servers with their own homes and ports over one database and
one shared directory, one active and the others standing by.

A standby serves the deployed apps, calls, results and secrets of the server before it; a standby takes over
within seconds of the active server's SIGKILL, and a map running through it finishes with every result once.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests import postgres
from tests.conftest import REPO, ServerProcess
from tests.e2e.test_chaos import free_port

APP = textwrap.dedent("""
    import os
    import time

    import shoal

    app = shoal.App("pg-shared")


    @app.function(secrets=[shoal.Secret.from_name("pg-secret")])
    def square(x: int) -> int:
        return x * x + int(os.environ["OFFSET"])


    @app.function(max_containers=4)
    def slow(x: int) -> int:
        time.sleep(0.01)
        return 3 * x
""")

SPAWN = """
import shoal
call = shoal.Function.from_name("pg-shared", "square").spawn(4)
print(call.object_id, call.get(timeout=120), flush=True)
"""

AGAIN = """
import sys
import shoal
square = shoal.Function.from_name("pg-shared", "square")
print(square.remote(5), shoal.FunctionCall.from_id(sys.argv[1]).get(timeout=60))
"""

MAP = """
import shoal
slow = shoal.Function.from_name("pg-shared", "slow")
for i, result in enumerate(slow.map(range(N))):
    print(i, result, flush=True)
"""


class Cluster:
    """Servers over one PostgreSQL database and one shared directory, each with its own home and port."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.token = "pg-" + secrets.token_hex(12)
        self.common = {"SHOAL_STORE": postgres.shared().new_database(), "SHOAL_SHARED_DIR": str(tmp / "shared"),
                       "SHOAL_TOKEN": self.token}  # fmt: skip
        self.servers: list[ServerProcess] = []

    def server(self, name: str, standby: bool = False) -> ServerProcess:
        home = self.tmp / name
        home.mkdir()
        srv = ServerProcess(home / "server", env={**self.common, "SHOAL_HOME": str(home)}, port=free_port(),
                            standby=standby)  # fmt: skip
        self.servers.append(srv)
        return srv

    def client_env(self, *servers: ServerProcess) -> dict[str, str]:
        urls = ",".join(s.url or f"http://127.0.0.1:{s.port}" for s in servers)  # a standby: where it will serve
        return {**os.environ, "SHOAL_SERVER_URL": urls, "SHOAL_TOKEN": self.token, "PYTHONPATH": str(REPO),
                "SHOAL_HOME": str(self.tmp / "client")}  # fmt: skip

    def shoal(self, env: dict[str, str], *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "shoal", *args], env=env, capture_output=True, text=True,
                              timeout=120, cwd=self.tmp)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def python(self, env: dict[str, str], source: str, *args: str) -> str:
        done = subprocess.run([sys.executable, "-c", source, *args], env=env, capture_output=True, text=True,
                              timeout=180, cwd=self.tmp)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def shoal_status(self, env: dict[str, str]) -> str:
        """``shoal server status`` (whatever its exit code: 1 while not running)."""
        done = subprocess.run([sys.executable, "-m", "shoal", "server", "status"], env=env, capture_output=True,
                              text=True, timeout=60, cwd=self.tmp)  # fmt: skip
        return done.stdout + done.stderr

    def stop(self) -> None:
        for srv in self.servers:
            srv.stop()


@pytest.fixture
def cluster(tmp_path: Path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def test_a_standby_over_the_same_database_serves_the_first_servers_apps_calls_and_secrets(cluster: Cluster):
    # Given an active server, and a second one (its own home and port) standing by over the same database
    first = cluster.server("first")
    second = cluster.server("second", standby=True)
    assert second.standby and second.proc.poll() is None
    # When an app is deployed, a secret created and a call spawned through the first
    (cluster.tmp / "app.py").write_text(APP)
    env = cluster.client_env(first)
    cluster.shoal(env, "secret", "create", "pg-secret", "OFFSET=5")
    cluster.shoal(env, "deploy", "app.py")
    call_id, result = cluster.python(env, SPAWN).split()
    assert result == "21"
    # and the first server stops
    first.stop()
    second.wait_active()
    # Then the second serves them all: the deployed function (its code from the shared blobs, its secret opened
    # with the shared key), and the first server's call with its result
    assert cluster.python(cluster.client_env(second), AGAIN, call_id).split() == ["30", "21"]


def test_a_standby_takes_over_a_map_within_seconds_of_the_active_servers_sigkill(cluster: Cluster):
    n = 600
    active = cluster.server("active")
    standby = cluster.server("standby", standby=True)
    (cluster.tmp / "app.py").write_text(APP)
    cluster.shoal(cluster.client_env(active), "secret", "create", "pg-secret", "OFFSET=0")
    cluster.shoal(cluster.client_env(active), "deploy", "app.py")
    # Given a client that knows both servers, in the middle of a map through the active one
    env = cluster.client_env(active, standby)
    with subprocess.Popen([sys.executable, "-c", MAP.replace("N", str(n))], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=cluster.tmp) as mapping:  # fmt: skip
        assert mapping.stdout is not None and mapping.stderr is not None
        lines = [mapping.stdout.readline() for _ in range(100)]
        # When the active server is killed
        killed_at = time.monotonic()
        os.kill(active.server_pid, signal.SIGKILL)
        standby.wait_active()
        took_over = time.monotonic() - killed_at
        # Then the standby serves within 10 s, and the map ends with every result, once each, in order
        rest = mapping.stdout.read()  # the pipe's buffered lines too (communicate() would read past them)
        assert mapping.wait(timeout=240) == 0, mapping.stderr.read()
    results = [line.split() for line in lines + rest.splitlines() if line.strip()]
    assert results == [[str(i), str(3 * i)] for i in range(n)]
    print(f"the standby took over {took_over:.2f}s after the SIGKILL")
    assert took_over < 10, f"the standby took {took_over:.1f}s to take over"


def test_shoal_server_start_stands_by_over_a_store_another_server_holds_and_takes_over_when_it_stops(cluster: Cluster):
    # Given `shoal server start` in two homes over the same store
    homes = {name: {**cluster.client_env(), **cluster.common, "SHOAL_HOME": str(cluster.tmp / name)}
             for name in ("one", "two")}  # fmt: skip
    for env in homes.values():
        env.pop("SHOAL_SERVER_URL")
    try:
        first = cluster.shoal(homes["one"], "server", "start", "--port", "0")
        second = cluster.shoal(homes["two"], "server", "start", "--port", "0")
        # Then the first runs and the second says it stands by, in its start and its status
        assert "running at" in first, first
        assert "standing by" in second and "another server is active" in second, second
        status = subprocess.run([sys.executable, "-m", "shoal", "server", "status"], env=homes["two"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert status.returncode == 1 and "standing by" in status.stdout, status.stdout
        assert "store: postgresql (shoal@127.0.0.1" in cluster.shoal(homes["one"], "server", "status")
        # When the first stops, the second serves (the same store: it knows the first one's state)
        cluster.shoal(homes["one"], "server", "stop")
        deadline = time.monotonic() + 30
        while "running at" not in (out := cluster.shoal_status(homes["two"])) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "running at" in out and "store: postgresql" in out, out
    finally:
        for env in homes.values():
            subprocess.run([sys.executable, "-m", "shoal", "server", "stop"], env=env, capture_output=True, timeout=60)
