"""Every ``SHOAL_*`` setting in one place: typed, with its environment variable, default and meaning.

:data:`VARIABLES` declares each variable once; :class:`Settings` (clients and the server) and
:class:`ContainerEnv` (what a backend hands a container) read them from the environment when first needed, so
tests and subprocesses can change the environment. The README's configuration table is checked against
:data:`VARIABLES` by a test. No other module reads ``SHOAL_*`` variables.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_PORT = 7811
INLINE_PAYLOAD_LIMIT = 256 * 1024  # larger payloads travel as blobs (files), not through SQLite


class Variable(msgspec.Struct, frozen=True):
    """One environment variable Shoal reads."""

    name: str
    default: str  # as documented ("" when unset means off/none)
    meaning: str
    audience: str = "user"  # "user" (documented for people), "container" (set by the backend), "test"


VARIABLES = (
    Variable("SHOAL_HOME", "~/.shoal", "where state lives: the standing server, images, embedded servers"),
    Variable("SHOAL_SERVER_URL", "", "the server to use instead of this home's own"),
    Variable("SHOAL_TOKEN", "", "the server's own token (server) or the token to present (client)"),
    Variable("SHOAL_RESULT_RETENTION", "604800", "seconds results are kept after their call finishes"),
    Variable(
        "SHOAL_HEARTBEAT_INTERVAL", "1", "seconds between a container's heartbeats (none within this of an exchange)"
    ),
    Variable("SHOAL_HEARTBEAT_TIMEOUT", "15", "seconds without a heartbeat before a container is killed"),
    Variable("SHOAL_CLIENT_TIMEOUT", "20", "seconds without a client heartbeat before an ephemeral app stops"),
    Variable("SHOAL_MAX_PAYLOAD_BYTES", "536870912", "the largest argument or result accepted"),
    Variable("SHOAL_RATE_LIMIT", "5000", "client requests per second per token (0: unlimited)"),
    Variable(
        "SHOAL_MAX_TOTAL_CONTAINERS",
        "max(32, 8 x CPUs)",
        "containers in all functions together (ray backend: 10,000)",
    ),
    Variable(
        "SHOAL_BOOT_WINDOW",
        "256",
        "containers launched and not yet booted (their spec not fetched), at most: a big start is paced by how fast "
        "the server answers; containers a backend has not placed do not count",
    ),
    Variable("SHOAL_EXPIRY_INTERVAL", "60", "seconds between sweeps for expired results"),
    Variable("SHOAL_BACKEND", "local", "where containers run: local (this machine) or ray (a Ray cluster)"),
    Variable(
        "SHOAL_STORE",
        "",
        "a standing server's state: a postgresql:// URL (servers over one database: an active one and "
        "standbys), else a SQLite file in its state directory (an embedded server's always is)",
    ),
    Variable(
        "SHOAL_SHARED_DIR",
        "",
        "with a PostgreSQL store: a directory every server reaches (blobs, volumes, the secrets key); "
        "default: the server's own state directory",
    ),
    Variable("SHOAL_RAY_ADDRESS", "auto", "the Ray cluster of the ray backend: auto, or HOST:PORT of its head"),
    Variable(
        "SHOAL_RAY_HEAD_TIMEOUT",
        "30",
        "seconds without an answer from the Ray cluster's head before its containers count as lost",
    ),  # fmt: skip
    Variable("SHOAL_SANDBOX", "auto", "off: run containers as plain processes even with bubblewrap installed"),
    Variable("SHOAL_FORK_SERVER", "on", "off: start every local container as a fresh process, not from a fork server"),
    Variable("SHOAL_SANDBOX_BINDS", "", "extra host directories (':'-separated) that containers see read-write"),
    Variable(
        "SHOAL_MOUNT_ROOTS",
        "",
        "on a server with a token: the folders (':'-separated) add_local_dir and "
        "add_local_file may name (none: such mounts are refused)",
    ),
    Variable(
        "SHOAL_LOG_BUDGET_MIB",
        "100",
        "MiB of output one container may write; past it, one line says so and the rest is dropped",
    ),
    Variable("SHOAL_STRICT_GPU", "", "1: gpu= on a machine without a GPU is an error, not a warning"),
    Variable(
        "SHOAL_SAMPLE_INTERVAL",
        "5",
        "seconds between samples of containers' CPU, memory and GPU and of calls' progress (the dashboard's charts); "
        "0: none",
    ),
    Variable("SHOAL_CPUS", "", "CPUs local containers may reserve in all (default: the CPUs this process may use)"),
    Variable("SHOAL_MEMORY_MIB", "", "MiB of memory local containers may reserve in all (default: the machine's)"),
    Variable(
        "SHOAL_FAKE_GPUS",
        "",
        "GPUs to declare with no hardware, one type each, comma-separated (T4,T4): tests and trying GPU code "
        "paths; replaces nvidia-smi's list",
    ),
    Variable("SHOAL_DEBUG", "", "1: errors show Shoal's own stack"),
    Variable("SHOAL_AUDIT_UNPICKLE", "", "a file the server logs every unpickling to (the security tests)", "test"),
    Variable("SHOAL_CONTAINER_ID", "", "set in containers: the container's id", "container"),
    Variable("SHOAL_CONTAINER_TOKEN", "", "set in containers: the container's token", "container"),
    Variable("SHOAL_APP_ID", "", "set in containers: its app's id", "container"),
    Variable("SHOAL_FUNCTION_ID", "", "set in containers: its function's id", "container"),
    Variable("SHOAL_PARENT_PID", "", "set in unsandboxed containers: the server's pid (die with it)", "container"),
    Variable("SHOAL_MEMORY_LIMIT_MIB", "", "set in containers: the memory limit to apply", "container"),
    Variable("SHOAL_BUNDLE_DIR", "", "set in sandboxed containers: where to unpack code", "container"),
    Variable("SHOAL_IMAGE_HASH", "", "set in containers: the image they run in", "container"),
    Variable("SHOAL_FORK_SOCKET", "", "set in a fork server: its socket's descriptor", "container"),
    Variable("SHOAL_FORK_ISOLATE", "", "set in a fork server: 1 to isolate each container", "container"),
    Variable("SHOAL_FORK_ROOM", "", "set in a fork server: room for a container's environ", "container"),
    Variable("SHOAL_NODE", "", "set in containers of the Ray backend: the node it runs on", "container"),
    Variable("SHOAL_SYNCED_VOLUMES", "", "set in containers of the Ray backend: volumes copied in (JSON)", "container"),
    Variable("SHOAL_WEB_HOST", "", "set in web containers on Ray: the node address their app listens on", "container"),
    Variable("SHOAL_WEB_KEY", "", "set in web containers: the gateway's key, which their app requires", "container"),
)


def _get(name: str) -> str | None:
    return os.environ.get(name) or None


def _float(name: str, default: float) -> float:
    raw = _get(name)
    return float(raw) if raw else default


class Settings(msgspec.Struct, frozen=True):
    """Where state lives, how clients find the server, and the server's limits (seconds unless named)."""

    home: Path
    server_url: str | None
    token: str | None
    result_retention: float
    heartbeat_interval: float
    heartbeat_timeout: float
    max_payload_bytes: int
    rate_limit: float
    client_timeout: float = 20.0
    expiry_interval: float = 60.0
    max_total_containers: int | None = None  # None: max(32, 8 x CPUs)
    boot_window: int = 256  # containers launched and not booted yet, at most (server/boot_window.py)
    sandbox_off: bool = False
    fork_server: bool = True
    sandbox_binds: tuple[str, ...] = ()
    mount_roots: tuple[str, ...] = ()
    log_budget_mib: int = 100
    strict_gpu: bool = False
    debug: bool = False
    audit_unpickle: str | None = None
    backend: str = "local"
    ray_address: str = "auto"
    ray_head_timeout: float = 30.0
    store: str | None = None  # None: a SQLite file in the server's state directory
    shared_dir: Path | None = None  # None: the server's state directory
    cpus: float | None = None  # None: the CPUs this process may use
    sample_interval: float = 5.0
    memory_mib: int | None = None  # None: the machine's memory
    fake_gpus: tuple[str, ...] | None = None  # None: nvidia-smi's list

    @classmethod
    def from_env(cls) -> Settings:
        binds = tuple(p for p in (_get("SHOAL_SANDBOX_BINDS") or "").split(os.pathsep) if p)
        max_total = _get("SHOAL_MAX_TOTAL_CONTAINERS")
        return cls(
            home=Path(_get("SHOAL_HOME") or str(Path.home() / ".shoal")),
            server_url=_get("SHOAL_SERVER_URL"),
            token=_get("SHOAL_TOKEN"),
            result_retention=_float("SHOAL_RESULT_RETENTION", 7 * 24 * 3600.0),
            heartbeat_interval=_float("SHOAL_HEARTBEAT_INTERVAL", 1.0),
            heartbeat_timeout=_float("SHOAL_HEARTBEAT_TIMEOUT", 15.0),
            max_payload_bytes=int(_float("SHOAL_MAX_PAYLOAD_BYTES", 512 * 1024 * 1024)),
            rate_limit=_float("SHOAL_RATE_LIMIT", 5000.0),
            client_timeout=_float("SHOAL_CLIENT_TIMEOUT", 20.0),
            expiry_interval=_float("SHOAL_EXPIRY_INTERVAL", 60.0),
            max_total_containers=int(max_total) if max_total else None,
            boot_window=int(_float("SHOAL_BOOT_WINDOW", 256)),
            sandbox_off=(_get("SHOAL_SANDBOX") or "auto").lower() in ("off", "0", "false"),
            sandbox_binds=binds,
            fork_server=(_get("SHOAL_FORK_SERVER") or "on").lower() not in ("off", "0", "false"),
            log_budget_mib=int(_float("SHOAL_LOG_BUDGET_MIB", 100)),
            mount_roots=tuple(p for p in (_get("SHOAL_MOUNT_ROOTS") or "").split(os.pathsep) if p),
            strict_gpu=_get("SHOAL_STRICT_GPU") == "1",
            debug=_get("SHOAL_DEBUG") == "1",
            audit_unpickle=_get("SHOAL_AUDIT_UNPICKLE"),
            backend=(_get("SHOAL_BACKEND") or "local").lower(),
            ray_address=_get("SHOAL_RAY_ADDRESS") or "auto",
            ray_head_timeout=_float("SHOAL_RAY_HEAD_TIMEOUT", 30.0),
            store=_get("SHOAL_STORE"),
            shared_dir=Path(shared) if (shared := _get("SHOAL_SHARED_DIR")) else None,
            cpus=_float("SHOAL_CPUS", 0.0) or None,
            sample_interval=_float("SHOAL_SAMPLE_INTERVAL", 5.0),
            memory_mib=int(_float("SHOAL_MEMORY_MIB", 0.0)) or None,
            fake_gpus=None
            if (fake := os.environ.get("SHOAL_FAKE_GPUS")) is None
            else tuple(k.strip() for k in fake.split(",") if k.strip()),
        )

    @property
    def default_url(self) -> str:
        return f"http://127.0.0.1:{DEFAULT_PORT}"


def synced_volumes() -> list[dict[str, Any]]:
    """In a container of the Ray backend: its volume mounts that are copies, synced on commit and reload."""
    raw = _get("SHOAL_SYNCED_VOLUMES")
    return list(json.loads(raw)) if raw else []


def use_home(path: Path) -> None:
    """Make ``path`` this process's ``SHOAL_HOME`` from now on (a Ray node's actor: the node's own home)."""
    os.environ["SHOAL_HOME"] = str(path)


def settings() -> Settings:
    """Current settings (re-read every time so tests and subprocesses can change the environment)."""
    return Settings.from_env()


class ContainerEnv(msgspec.Struct, frozen=True):
    """What a backend tells a container through its environment (see :data:`VARIABLES`, audience "container")."""

    container_id: str
    container_token: str
    server_url: str
    app_id: str | None
    parent_pid: int
    memory_limit_mib: int
    bundle_dir: Path | None
    image_hash: str | None
    web_host: str = "127.0.0.1"  # where a web function's app listens
    web_key: str = ""  # what its app requires of each request (the gateway's key for this container)


def in_container() -> bool:
    """True inside a Shoal container (cheap: called on every invocation)."""
    return "SHOAL_CONTAINER_ID" in os.environ


def container_env() -> ContainerEnv | None:
    """This container's settings, or None outside a container (on a client or the server)."""
    container_id = _get("SHOAL_CONTAINER_ID")
    if container_id is None:
        return None
    bundle_dir = _get("SHOAL_BUNDLE_DIR")
    return ContainerEnv(
        container_id=container_id,
        container_token=_get("SHOAL_CONTAINER_TOKEN") or "",
        server_url=_get("SHOAL_SERVER_URL") or "",
        app_id=_get("SHOAL_APP_ID"),
        parent_pid=int(_get("SHOAL_PARENT_PID") or 0),
        memory_limit_mib=int(_get("SHOAL_MEMORY_LIMIT_MIB") or 0),
        bundle_dir=Path(bundle_dir) if bundle_dir else None,
        image_hash=_get("SHOAL_IMAGE_HASH"),
        web_host=_get("SHOAL_WEB_HOST") or "127.0.0.1",
        web_key=_get("SHOAL_WEB_KEY") or "",
    )


def is_shared_store(location: str) -> bool:
    """Whether a store location (SHOAL_STORE) is a database several servers share (PostgreSQL), not a file of this
    machine."""
    return location.startswith(("postgresql://", "postgres://"))
