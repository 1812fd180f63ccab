"""Run the control plane: ``python -m shoal.server`` (the ``shoal server`` command calls :func:`serve`)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import socket
import sys
from pathlib import Path

import uvicorn

from ..backends.local import LocalBackend
from ..config import DEFAULT_PORT, settings
from ..exception import InvalidError
from .app import create_app
from .control import ControlPlane, ServerConfig, default_max_total_containers


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on small responses
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    state_dir: Path | None = None,
    token: str | None = None,
    parent_pid: int | None = None,
    announce: bool = True,
) -> None:
    """Serve until SIGINT/SIGTERM (or until ``parent_pid`` exits, for an embedded server).

    Raises:
        InvalidError: a non-loopback ``host`` without a token.
    """
    cfg = settings()
    token = token or cfg.token
    if not is_loopback(host) and not token:
        raise InvalidError(
            f"Refusing to listen on {host}: only loopback addresses are served without a token. "
            "Set SHOAL_TOKEN (or pass --token) to serve other hosts."
        )
    state_dir = state_dir or cfg.home / "server"
    sock = bind(host, port)
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{sock.getsockname()[1]}"
    config = ServerConfig(
        state_dir=state_dir, url=url, client_token=token, heartbeat_timeout=cfg.heartbeat_timeout,
        result_retention=cfg.result_retention, max_total_containers=default_max_total_containers(),
        max_payload_bytes=cfg.max_payload_bytes, rate_limit=cfg.rate_limit,
    )  # fmt: skip
    plane = ControlPlane(config, LocalBackend(state_dir / "containers"))
    server = _Server(
        uvicorn.Config(
            create_app(plane), log_level="warning", lifespan="on", access_log=False, timeout_keep_alive=60,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
        ),
        plane,
    )  # fmt: skip
    if announce:
        print(f"SHOAL_SERVER_URL={url}", flush=True)

    async def main() -> None:
        watcher = asyncio.create_task(_watch_parent(server, parent_pid)) if parent_pid else None
        await server.serve(sockets=[sock])
        if watcher:
            watcher.cancel()

    asyncio.run(main())


SHUTDOWN_GRACE = 1  # seconds for in-flight requests once long polls have been told to answer


class _Server(uvicorn.Server):
    """uvicorn, told first when it is stopping: the control plane stops deciding and ends its long polls before
    uvicorn waits for open requests, so SIGTERM exits in about a second (not a long poll's 30 s), and nothing runs
    its client-timeout reaper while clients cannot reach it."""

    def __init__(self, config: uvicorn.Config, plane: ControlPlane) -> None:
        super().__init__(config)
        self.plane = plane

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.plane.quiesce()
        await super().shutdown(sockets)


async def _watch_parent(server: uvicorn.Server, parent_pid: int) -> None:
    """An embedded server lives only as long as the process that started it."""
    while True:
        await asyncio.sleep(0.5)
        if os.getppid() != parent_pid:
            server.should_exit = True
            return


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
    parser.add_argument("--token", default=None)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if os.environ.get("SHOAL_AUDIT_UNPICKLE"):
        install_unpickle_audit(os.environ["SHOAL_AUDIT_UNPICKLE"])
    try:
        serve(args.host, args.port, args.state_dir, args.token, args.parent_pid)
    except InvalidError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"Error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        sys.exit(1)
