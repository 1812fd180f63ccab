"""Run the control plane: ``python -m shoal.server`` (the ``shoal server`` command calls :func:`serve`)."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .. import backends
from ..config import DEFAULT_PORT, is_shared_store, settings
from ..exception import InvalidError
from .listen import bind, is_loopback

if TYPE_CHECKING:
    from .leadership import Leadership
    from .volumes import VolumeStore

# What the server imports at the top is what it needs to launch its backend's slow start (the local backend's spare
# fork server: backends.Kind.prelaunch): the rest (the backend's running parts, the control plane, its routes, its
# store, its HTTP front) is imported after that, while the fork server's interpreter and imports run beside it. A
# fresh embedded server's first container then forks at once.


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    state_dir: Path | None = None,
    token: str | None = None,
    parent_pid: int | None = None,
    announce: bool = True,
    kind: str = "process",
    backend: str | None = None,
    ray_address: str | None = None,
    store: str | None = None,
    shared_dir: Path | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or until ``parent_pid`` exits, for an embedded server).

    ``store`` is where the state lives: a ``postgresql://`` URL (then servers over the same database are one
    active server and standbys: this one waits until it holds the active server's lock, see ``leadership.py``),
    else a SQLite file in ``state_dir``; ``shared_dir`` is where blobs, volumes and the secrets key live (a
    directory every server over the store reaches). Both default to the settings (SHOAL_STORE, SHOAL_SHARED_DIR).

    ``kind`` is how this home's clients find the server (``standing``: the home's one standing server;
    ``embedded``; ``process``: only through SHOAL_SERVER_URL). Its record in ``$SHOAL_HOME/servers`` carries the
    local token clients present when no ``token`` is set.

    ``backend`` is where containers run: ``local`` (this machine) or ``ray`` (the Ray cluster at
    ``ray_address``); both default to the settings (SHOAL_BACKEND, SHOAL_RAY_ADDRESS).

    Raises:
        InvalidError: a non-loopback ``host`` without a token, the Ray backend without a token, or a second
            standing server for this home.
    """
    cfg = settings()
    token = token or cfg.token
    try:
        chosen = backends.kind(backend or cfg.backend)
    except ValueError as exc:
        raise InvalidError(str(exc)) from None
    if chosen.needs_token and not token:
        raise InvalidError(
            f"The {chosen.name} backend serves containers on other machines, so it needs a token: set SHOAL_TOKEN "
            "(or pass --token), and --host to an address the cluster's nodes reach."
        )
    if not is_loopback(host) and not token:
        raise InvalidError(
            f"Refusing to listen on {host}: only loopback addresses are served without a token. "
            "Set SHOAL_TOKEN (or pass --token) to serve other hosts."
        )
    chosen.get_ready()  # the local backend's bubblewrap probe: it runs beside what follows
    from .. import _servers  # (not at the top: the backend's preparation runs first)

    if kind == "standing" and (other := _servers.standing()) is not None and other.pid != os.getpid():
        raise InvalidError(
            f"This SHOAL_HOME ({cfg.home}) already has a standing server at {other.url} (pid {other.pid}): use it, "
            "stop it with `shoal server stop`, or set SHOAL_HOME to another directory."
        )
    state_dir = state_dir or cfg.home / "server"
    embedded = parent_pid is not None  # an embedded server's state is its own (SQLite), whatever the settings say
    store = store or (None if embedded else cfg.store)
    shared_dir = shared_dir or (None if embedded else cfg.shared_dir)
    leadership = None
    if store and is_shared_store(store):
        leadership = _lead(store, host, port, state_dir)
        if leadership is None:
            return  # stopped while a standby
    sock = bind(host, port)
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{sock.getsockname()[1]}"
    opened, volumes = _open_backend(chosen, state_dir, shared_dir, ray_address or cfg.ray_address)

    from .control import ControlPlane, Parts, ServerConfig, default_max_total_containers
    from .http_server import HttpServer
    from .routes import create_app

    config = ServerConfig(
        state_dir=state_dir, url=url, client_token=token, heartbeat_timeout=cfg.heartbeat_timeout,
        result_retention=cfg.result_retention, max_total_containers=default_max_total_containers(chosen),
        max_payload_bytes=cfg.max_payload_bytes, rate_limit=cfg.rate_limit,
        local_token=None if token else _local_token(state_dir), client_timeout=cfg.client_timeout,
        expiry_interval=cfg.expiry_interval, home_ports=embedded, boot_window=cfg.boot_window,
    )  # fmt: skip
    plane = ControlPlane(config, opened, Parts.in_dir(state_dir, store, shared_dir, volumes))
    server = HttpServer(create_app(plane), plane)
    record = server.record = _servers.write(
        _servers.ServerRecord(url, os.getpid(), "embedded" if parent_pid else kind, config.local_token, str(state_dir))
    )
    if announce:
        print(f"SHOAL_SERVER_URL={url}", flush=True)
    gc.enable()  # off for the start (python -m shoal.server): on until the server settles (_loop.settle_gc)
    try:
        server.serve_on(sock, parent_pid)
    finally:
        record.unlink(missing_ok=True)
        if leadership:
            leadership.close()


def _open_backend(
    chosen: backends.Kind, state_dir: Path, shared_dir: Path | None, ray_address: str
) -> tuple[backends.Backend, VolumeStore]:
    """The backend, opened (and its slow start begun: its prelaunch, then
    :meth:`~shoal.backends.base.Backend.prestart`) before the control plane's modules are imported; and the
    volumes it mounts."""
    from .volumes import open_volumes

    volumes = open_volumes(state_dir, shared_dir)
    hidden = (str(shared_dir),) if shared_dir else ()  # the blobs and the secrets key of every server: no container's
    setup = backends.Setup(state_dir, volumes, hidden, ray_address)
    chosen.prelaunch(setup)  # before the backend's own imports: the local backend's spare fork server
    backend = chosen.open(setup)
    backend.prestart()
    return backend, volumes


def _lead(store: str, host: str, port: int, state_dir: Path) -> Leadership | None:
    """Wait until this server is the active one over a shared store (its lock), as a standby while another is;
    None when stopped (SIGTERM, Ctrl-C) while waiting."""
    from .. import _servers
    from .leadership import Leadership
    from .store import redact_dsn

    gc.enable()  # a standby may wait for hours: not with the collector off (see __main__)
    leadership = Leadership(store)
    stopped = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopped.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    url_host = f"[{host}]" if ":" in host else host
    standby = _servers.ServerRecord(f"http://{url_host}:{port}", os.getpid(), "standby", None, str(state_dir))
    paths: list[Path] = []

    def announce() -> None:
        print(f"Standby: another server is active over {redact_dsn(store)}; this one serves at {standby.url} "
              "when it stops.", flush=True)  # fmt: skip
        paths.append(_servers.write(standby))

    try:
        if not leadership.wait(stopped, announce):
            leadership.close()
            return None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for path in paths:
            path.unlink(missing_ok=True)
    if paths:
        print("Active: this server took over from the one that stopped.", flush=True)
    leadership.watch()
    return leadership


def _local_token(state_dir: Path) -> str:
    """The credential of a server without a token, kept with its state so that clients outlive a restart."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    path = state_dir / "local.token"
    if path.exists():
        return path.read_text().strip()
    import secrets

    token = "shl-" + secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def install_unpickle_audit(path: str) -> None:
    """Record every ``pickle.find_class`` in this process to ``path``: the server must never unpickle user data.

    Enabled by ``SHOAL_AUDIT_UNPICKLE=<file>``; the security tests run a workload and expect the file empty.
    """

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "pickle.find_class":
            with open(path, "a") as f:
                f.write(f"{args!r}\n")

    sys.addaudithook(hook)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shoal.server", description="Run the Shoal control plane.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--token", default=None, help="Prefer SHOAL_TOKEN: a command line is visible to `ps`.")
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--standing", action="store_true", help="Be this SHOAL_HOME's standing server.")
    parser.add_argument("--backend", choices=sorted(backends.KINDS), default=None,
                        help="Default: SHOAL_BACKEND or local.")  # fmt: skip
    parser.add_argument("--ray-address", default=None, help="The Ray backend's cluster: auto or HOST:PORT.")
    parser.add_argument("--store", default=None, help="postgresql://... (servers sharing it: active and standbys), "
                        "else a SQLite file in the state directory. Default: SHOAL_STORE. Prefer the setting: a "
                        "command line is visible to `ps`.")  # fmt: skip
    parser.add_argument("--shared-dir", type=Path, default=None, help="Blobs, volumes and the secrets key: a "
                        "directory every server over the store reaches. Default: SHOAL_SHARED_DIR, or the state "
                        "directory.")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    audit = settings().audit_unpickle
    if audit:
        install_unpickle_audit(audit)
    try:
        serve(args.host, args.port, args.state_dir, args.token, args.parent_pid,
              kind="standing" if args.standing else "process", backend=args.backend,
              ray_address=args.ray_address, store=args.store, shared_dir=args.shared_dir)  # fmt: skip
    except InvalidError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"Error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        sys.exit(1)
