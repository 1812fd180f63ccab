"""Chunks: many small payloads (or results) in one byte string that can be cut without being parsed.

The control plane keeps a batch of a map's inputs as one row, and a container reports a run of successes as one
output (chunk-level rows: one SQLite row per chunk instead of per input). The server never unpickles, so a chunk
is a frame it can split by offsets alone: a little-endian ``uint32`` count ``n``, then ``n`` end offsets, then the
items' bytes back to back.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

_U32 = struct.Struct("<I")


def pack(items: Sequence[bytes]) -> bytes:
    """One frame holding ``items`` in order."""
    ends = []
    end = 0
    for item in items:
        end += len(item)
        ends.append(end)
    return struct.pack(f"<{len(items) + 1}I", len(items), *ends) + b"".join(items)


def _ends(frame: bytes) -> tuple[int, tuple[int, ...]]:
    (n,) = _U32.unpack_from(frame)
    return 4 * (n + 1), struct.unpack_from(f"<{n}I", frame, 4)


def unpack(frame: bytes) -> list[bytes]:
    """The items of a frame, in order."""
    base, ends = _ends(frame)
    items = []
    start = base
    for end in ends:
        items.append(frame[start : base + end])
        start = base + end
    return items


def count(frame: bytes) -> int:
    return int(_U32.unpack_from(frame)[0])


def item(frame: bytes, i: int) -> bytes:
    """Item ``i`` of a frame."""
    base, ends = _ends(frame)
    return frame[base + (ends[i - 1] if i else 0) : base + ends[i]]


def split(frame: bytes, k: int) -> tuple[bytes, bytes]:
    """The first ``k`` items and the rest, each as a frame (a part of one item is that item itself, unframed)."""
    items = unpack(frame)
    head, tail = items[:k], items[k:]
    return (head[0] if len(head) == 1 else pack(head)), (tail[0] if len(tail) == 1 else pack(tail))


def frame_or_item(items: Sequence[bytes]) -> bytes:
    """How a row of ``len(items)`` inputs keeps them: one input as itself, more as a frame."""
    return items[0] if len(items) == 1 else pack(items)
