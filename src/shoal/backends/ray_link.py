"""Messages between the Ray backend (in the server) and its Ray bridge (the child process that is Ray's driver).

One stream socket (a ``socketpair``) per bridge; each message is a 4-byte big-endian length and a msgpack body,
typed and validated on decoding. Never pickles. The bridge speaks first: a :class:`Cluster` once it reached the
cluster (the handshake), then whenever the cluster's resources change.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import msgspec

from .base import ContainerSpec

HEADER = struct.Struct(">I")
MAX_MESSAGE = 64 * 2**20  # a container's spec with its image recipe is a few KiB; this only bounds a bad peer


class Launch(msgspec.Struct, tag="launch", frozen=True):
    """Create the container's actor; it runs once Ray places it."""

    spec: ContainerSpec


class Terminate(msgspec.Struct, tag="terminate", frozen=True):
    container_id: str
    grace: float


class Cluster(msgspec.Struct, tag="cluster", frozen=True):
    """Ray's ``cluster_resources()``: what the cluster offers in all (``CPU``, ``GPU``, ``memory``, ...)."""

    resources: dict[str, float]


class Placed(msgspec.Struct, tag="placed", frozen=True):
    """Ray placed the container's actor on ``node``, and its process is being started."""

    container_id: str
    node: str


class Exited(msgspec.Struct, tag="exited", frozen=True):
    """The container ended: its exit code (negative: that signal; None: lost with its actor or node) and the last
    lines it wrote."""

    container_id: str
    code: int | None
    tail: str = ""


ToBridge = Launch | Terminate
FromBridge = Cluster | Placed | Exited

_encoder = msgspec.msgpack.Encoder()
_to_bridge = msgspec.msgpack.Decoder(ToBridge)
_from_bridge = msgspec.msgpack.Decoder(FromBridge)


def frame(message: ToBridge | FromBridge) -> bytes:
    body = _encoder.encode(message)
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next message's body, or None once the peer closed the connection."""
    try:
        size = HEADER.unpack(await reader.readexactly(HEADER.size))[0]
        if size > MAX_MESSAGE:
            raise ConnectionError(f"a message of {size} bytes from the Ray bridge is over the limit")
        return await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def read_frame_blocking(sock: socket.socket) -> bytes | None:
    """The next message's body from a blocking socket (the handshake, before the event loop takes the socket
    over), or None once the peer closed it; ``TimeoutError`` past the socket's timeout."""
    head = _recv_exactly(sock, HEADER.size)
    if head is None:
        return None
    size = HEADER.unpack(head)[0]
    if size > MAX_MESSAGE:
        raise ConnectionError(f"a message of {size} bytes from the Ray bridge is over the limit")
    return _recv_exactly(sock, size)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        piece = sock.recv(size - len(data))
        if not piece:
            return None
        data += piece
    return bytes(data)


def to_bridge(body: bytes) -> ToBridge:
    return _to_bridge.decode(body)


def from_bridge(body: bytes) -> FromBridge:
    return _from_bridge.decode(body)
