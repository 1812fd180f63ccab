"""Shared fixtures: an isolated SHOAL_HOME and a real standing server process for the session."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

_HOME = tempfile.mkdtemp(prefix="shoal-test-home-")
os.environ["SHOAL_HOME"] = _HOME
os.environ.setdefault("SHOAL_HEARTBEAT_INTERVAL", "0.5")
os.environ.setdefault("SHOAL_HEARTBEAT_TIMEOUT", "6")
os.environ.pop("SHOAL_SERVER_URL", None)
# Ray (read when it is imported) takes the loopback address as the node IP with this set: the Ray clusters the
# tests start neither listen on nor dial the machine's external address.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# Containers run sandboxed with a private /tmp: tests share files with them through this directory only.
# Run by root, containers run as nobody: the directory is open to them.
SHARED = tempfile.mkdtemp(prefix="shoal-test-shared-")
os.chmod(SHARED, 0o1777)
os.environ["SHOAL_SANDBOX_BINDS"] = SHARED


def shared_dir() -> str:
    """A fresh directory that the test and its containers both see (and write)."""
    path = tempfile.mkdtemp(dir=SHARED)
    os.chmod(path, 0o777)
    return path


os.environ.pop("SHOAL_TOKEN", None)

REPO = Path(__file__).resolve().parent.parent


def host_pids(container_ids: set[str]) -> list[int]:
    """Every process on this machine that belongs to one of these containers (its sandbox, its interpreter and
    what that started), by the container id in its environment: code in a container sees pids of its own pid
    namespace only, so the apps report their container's id (``tests.apps.me``) and tests find pids here."""
    return [p.pid for p in psutil.process_iter() if _container_of(p.pid) in container_ids]


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _container_of(pid: int) -> str | None:
    """The container id in a process's environment (None: not a container's, or gone)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((item.split(b"=", 1)[1].decode() for item in environ if item.startswith(b"SHOAL_CONTAINER_ID=")),
                None)  # fmt: skip


def wait_for(probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``probe`` until it returns something truthy (bounded), and return that."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def wait_until_gone(container_ids: set[str], timeout: float = 30) -> list[int]:
    """Wait (bounded) for every process of these containers to end; returns those still alive (zombies aside)."""
    procs = []
    for pid in host_pids(container_ids):
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p.pid for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def interpreter_pid(container_id: str) -> int:
    """The pid of a container's runtime, the Python process that runs its inputs (inside its sandbox), as this
    machine sees it: a forked container's keeper and init run the same interpreter above it."""
    found = []
    for pid in host_pids({container_id}):
        try:
            cmdline = psutil.Process(pid).cmdline()
        except psutil.Error:
            continue
        if cmdline and "python" in Path(cmdline[0]).name and any(a.startswith("shoal.container") for a in cmdline):
            found.append(pid)
    for pid in found:  # the innermost
        with contextlib.suppress(psutil.Error):
            if not any(child.pid in found for child in psutil.Process(pid).children()):
                return pid
    raise AssertionError(f"no process of container {container_id}")


class ServerProcess:
    """A ``python -m shoal.server`` child process on a free loopback port."""

    def __init__(
        self, state_dir: Path, env: dict[str, str] | None = None, port: int = 0, args: tuple[str, ...] = (),
        wrap: Callable[[list[str]], list[str]] | None = None, standby: bool = False,
    ) -> None:  # fmt: skip
        """``standby``: return once the server says it stands by (another is active over its PostgreSQL store);
        :meth:`wait_active` then waits until it serves."""
        self.state_dir = state_dir
        self.port = port
        self.log_path = state_dir.parent / f"{state_dir.name}.log"
        self.configured_token = (env or {}).get("SHOAL_TOKEN")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                (wrap or list)([sys.executable, "-m", "shoal.server", "--port", str(port), "--state-dir",
                                str(state_dir), *args]),
                stdout=subprocess.PIPE, stderr=log, env={**os.environ, **(env or {})},
            )  # fmt: skip
        self.url = ""
        self.standby = False
        self.wait_active(until_standby=standby)

    def wait_active(self, until_standby: bool = False) -> None:
        """Read the server's announcements until it serves (or, ``until_standby``, until it stands by)."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline().decode().strip()
            if line.startswith("Standby:"):
                self.standby = True
                if until_standby:
                    return
                continue
            if line.startswith("Active:"):
                continue
            assert line.startswith("SHOAL_SERVER_URL="), f"server did not start: {line!r}"
            self.url, self.standby = line.split("=", 1)[1], False
            return

    @property
    def token(self) -> str | None:
        """The local token this server published for its home (what SDK clients of the home present)."""
        from shoal import _servers

        return self.configured_token or _servers.token_for(self.url)

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    @property
    def server_pid(self) -> int:
        """The pid of the control plane's own process (a child of the sandbox when started ``as_ordinary_user``)."""
        for child in [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]:
            if "shoal.server" in child.cmdline() and "bwrap" not in child.cmdline()[0]:
                return child.pid
        return self.proc.pid

    def container_pids(self) -> list[int]:
        """One process per container of the server, the one whose end is the container's: a fresh container's
        bwrap (the server's child), a forked one's keeper (below its fork server); see ``_pids_of``."""
        if self.configured_token:
            return [p.pid for p in _ray_containers() if "shoal.container" in " ".join(_cmdline(p))]
        out = []
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                own = _container_of(child.pid)
                if own is not None and _container_of(child.ppid()) != own:  # the outermost of its container
                    out.append(child.pid)
            except psutil.Error:
                continue
        return out

    def busy_pids_of(self, function: str) -> list[int]:
        """Pids of the containers of one function (by its tag) that are running an input or a web request."""
        import httpx

        rows = httpx.get(f"{self.url}/containers", headers=self.auth, timeout=30).json()["containers"]
        busy = {r["container_id"] for r in rows if r["function"] == function and r["running_inputs"] > 0}
        return self._pids_of(busy)

    def _pids_of(self, container_ids: set[str]) -> list[int]:
        return [pid for pid in self.container_pids() if _container_of(pid) in container_ids]

    def busy_container_pids(self) -> list[int]:
        """Pids of containers that are running and hold inputs (not ones still starting: three starts killed in a
        row rightly count as a crash loop and fail the pending inputs)."""
        import httpx

        rows = httpx.get(f"{self.url}/containers", headers=self.auth, timeout=30).json()["containers"]
        return self._pids_of({r["container_id"] for r in rows if r["state"] == "RUNNING" and r["running_inputs"] > 0})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """A real standing server; tests talk to it through SHOAL_SERVER_URL."""
    state = Path(_HOME) / "session-server"
    state.mkdir(parents=True, exist_ok=True)
    srv = ServerProcess(state)
    os.environ["SHOAL_SERVER_URL"] = srv.url
    yield srv
    os.environ.pop("SHOAL_SERVER_URL", None)

    srv.stop()


def _ray_containers() -> list[psutil.Process]:
    """Container processes under Ray actors (children of Ray's workers, not of the server)."""
    return [p for p in psutil.process_iter(["cmdline"]) if "shoal.container" in " ".join(p.info["cmdline"] or [])]


RAY_TOKEN = "shoal-ray-tests-token"


class RayCluster:
    """A Ray cluster of three processes' nodes on 127.0.0.1: a 1-CPU head, a 1-CPU worker, and a 1-CPU worker
    with one (pretend) T4 GPU."""

    def __init__(self) -> None:
        from ray.cluster_utils import Cluster

        small = {"object_store_memory": 80 * 2**20}
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                                       **small})  # fmt: skip
        self.cpu_node = self.cluster.add_node(num_cpus=1, **small)
        self.gpu_node = self.cluster.add_node(num_cpus=1, num_gpus=1, resources={"accelerator_type:T4": 1}, **small)
        self.cluster.wait_for_nodes()
        self.address = self.cluster.address

    def workers(self) -> list[Any]:
        return [self.cpu_node, self.gpu_node]

    def replace(self, node: Any) -> None:
        """Kill ``node`` without warning (as a lost machine), and add a fresh node of the same kind."""
        self.cluster.remove_node(node, allow_graceful=False)
        small = {"object_store_memory": 80 * 2**20}
        if node is self.gpu_node:
            self.gpu_node = self.cluster.add_node(num_cpus=1, num_gpus=1, resources={"accelerator_type:T4": 1},
                                                  **small)  # fmt: skip
        else:
            self.cpu_node = self.cluster.add_node(num_cpus=1, **small)

    def shutdown(self) -> None:
        self.cluster.shutdown()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """Skipped where Ray is not installed, failed in CI (which installs it)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Ray is required in CI (the test extra installs it)")
        pytest.skip("Ray is not installed (pip install -e '.[test]')")
    cluster = RayCluster()
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="session")
def ray_server(ray_cluster: RayCluster) -> Iterator[ServerProcess]:
    """A server whose containers are Ray actors on ``ray_cluster`` (the Ray backend needs a token)."""
    state = Path(_HOME) / "ray-server"
    state.mkdir(parents=True, exist_ok=True)
    srv = ServerProcess(state, env={"SHOAL_TOKEN": RAY_TOKEN, "SHOAL_MOUNT_ROOTS": str(REPO)},
                        args=("--backend", "ray", "--ray-address", ray_cluster.address))  # fmt: skip
    yield srv
    srv.stop()


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.ray)])
def backend(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """The server of one backend (the core end-to-end tests run on each, same assertions): SHOAL_SERVER_URL and
    SHOAL_TOKEN point the SDK at it for the test."""
    srv: ServerProcess = request.getfixturevalue("server" if request.param == "local" else "ray_server")
    saved = {k: os.environ.get(k) for k in ("SHOAL_SERVER_URL", "SHOAL_TOKEN")}
    os.environ["SHOAL_SERVER_URL"] = srv.url
    if srv.configured_token:
        os.environ["SHOAL_TOKEN"] = srv.configured_token
    try:
        yield srv
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def sandbox() -> None:
    """Tests of sandbox features: skipped where bubblewrap is missing, failed in CI (which installs it)."""
    from shoal.backends import sandbox as sb

    if sb.bwrap() is None:
        if os.environ.get("CI"):
            pytest.fail("bubblewrap is required in CI (.ci/run installs it)")
        pytest.skip("bubblewrap (bwrap) is not installed")


@pytest.fixture
def fork_servers(sandbox: None) -> None:
    """Tests of forked containers: they make user namespaces as an unprivileged user, which some kernels refuse
    (then containers start afresh): skipped there, failed in CI."""
    refusing = {"user/max_user_namespaces": "0", "kernel/unprivileged_userns_clone": "0",
                "kernel/apparmor_restrict_unprivileged_userns": "1"}  # fmt: skip
    found = {name: Path(f"/proc/sys/{name}") for name in refusing}
    refused = [name for name, path in found.items() if path.exists() and path.read_text().strip() == refusing[name]]
    if refused:
        if os.environ.get("CI"):
            pytest.fail(f"forked containers need unprivileged user namespaces ({', '.join(refused)})")
        pytest.skip(f"this kernel refuses unprivileged user namespaces ({', '.join(refused)}): no fork servers")


def as_ordinary_user(command: list[str]) -> list[str]:
    """``command`` (a server) run as an ordinary user (``nobody``) from a test run by root: the host as it is, but
    for folders ``nobody`` may not enter that hold the interpreter (pyenv's under /root), reopened for it; bwrap
    sets that up as root, then ``setpriv`` drops to ``nobody``. The server's containers then take the sandbox's
    unprivileged path (a user namespace). The host's /proc stays: a nested sandbox needs it whole to mount its own.
    """
    from shoal.backends import sandbox as sb

    owner = sb.user()
    assert owner is not None
    args = ["bwrap", "--die-with-parent", "--unshare-pid", "--dev-bind", "/", "/"]  # its pid namespace: all end with it
    for folder, paths in sb._reopened(command[0], under_tmp=True).items():  # a CI venv sits in a 0700 mktemp
        args += ["--perms", "0755", "--tmpfs", folder]
        for path in paths:
            args += sb._bind("--ro-bind", path, path, [folder])
    drop = ["setpriv", f"--reuid={owner[0]}", f"--regid={owner[1]}", "--clear-groups", "--"]
    return [*args, "--", *drop, *command]


@pytest.fixture(params=["root", "ordinary user"])
def any_server(
    request: pytest.FixtureRequest, sandbox: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerProcess]:
    """The session's server (run by this test's user: root in CI), and a server run by an ordinary user in a home
    of its own: SHOAL_SERVER_URL and SHOAL_HOME point the SDK at the one under test."""
    if request.param == "root":
        yield request.getfixturevalue("server")
        return
    if os.geteuid() != 0:
        pytest.skip("the suite runs as an ordinary user already: the session's server is that case")
    from shoal.backends import sandbox as sb

    home = Path(tempfile.mkdtemp(prefix="shoal-ordinary-", dir="/var/tmp"))
    owner = sb.user()
    assert owner is not None
    os.chown(home, *owner)
    monkeypatch.setenv("SHOAL_HOME", str(home))
    srv = ServerProcess(home / "server", env={"SHOAL_HOME": str(home)}, wrap=as_ordinary_user)
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    try:
        yield srv
    finally:
        srv.stop()
        import shutil

        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's headless Chromium through its ChromeDriver (no browser download): skipped where they are missing,
    failed in CI (which installs them)."""
    import shutil

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are required in CI (.ci/run installs them)")
        pytest.skip("chromium or chromedriver is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.implicitly_wait(10)
    try:
        yield session
    finally:
        session.quit()


def run_script(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a Python script the way a user does, in a fresh interpreter."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the Ray cluster run last: its processes then share the machine with no timing-sensitive test."""
    items.sort(key=lambda item: item.get_closest_marker("ray") is not None)
