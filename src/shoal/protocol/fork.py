"""Messages between the local backend and a fork server (:mod:`shoal.container.zygote`), over a Unix socket.

One message per datagram (``SOCK_SEQPACKET``), JSON. File descriptors travel beside a :class:`Spawn` as
``SCM_RIGHTS``: the container's log file, a memfd holding its environment (so that the fork server never
reads a container's environment, secrets included: only the container does), and optionally its memory cgroup's
``cgroup.procs``. Never pickles: the fork server and the server do not trust each other's bytes.
"""

from __future__ import annotations

import msgspec


class Spawn(msgspec.Struct, tag="spawn", frozen=True):
    """Fork one container. Its fds: log, environment, then (``cgroup``) its memory cgroup's ``cgroup.procs``."""

    container_id: str
    tmp_mib: int
    cgroup: bool = False


class Kill(msgspec.Struct, tag="kill", frozen=True):
    """End one container and everything it started."""

    container_id: str


class Hello(msgspec.Struct, tag="hello", frozen=True):
    """The fork server is ready; ``error``: why it cannot isolate containers (then it is not used)."""

    error: str = ""


class Started(msgspec.Struct, tag="started", frozen=True):
    container_id: str


class Exited(msgspec.Struct, tag="exited", frozen=True):
    """A container ended: its exit code (negative: killed by that signal)."""

    container_id: str
    code: int


ToForkServer = Spawn | Kill
FromForkServer = Hello | Started | Exited
MAX_FDS = 3
MAX_MESSAGE = 4096

_encoder = msgspec.json.Encoder()
_to_fork_server = msgspec.json.Decoder(ToForkServer)
_from_fork_server = msgspec.json.Decoder(FromForkServer)


def encode(message: ToForkServer | FromForkServer) -> bytes:
    return _encoder.encode(message)


def decode_request(data: bytes) -> ToForkServer:
    return _to_fork_server.decode(data)


def decode_reply(data: bytes) -> FromForkServer:
    return _from_fork_server.decode(data)
