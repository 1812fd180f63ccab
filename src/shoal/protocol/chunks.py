"""Chunks: many small payloads (or results) in one byte string that can be cut without being parsed.

The control plane keeps a batch of a map's inputs as one row, and a container reports a run of successes as one
output (chunk-level rows: one SQLite row per chunk instead of per input). The server never unpickles, so a chunk
is a frame it can cut by offsets alone: little-endian ``uint32`` count ``n`` and ``base``, then ``n`` end offsets,
then the items' bytes back to back; item ``i`` ends at ``end[i] - base`` in the data and starts where item
``i - 1`` ends (item 0 at 0). Cutting a frame copies bytes and rewrites no offset: the rest keeps its ends and
takes the cut's end as its ``base``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

_HEAD = struct.Struct("<II")  # count, base
_U32 = struct.Struct("<I")


def pack(items: Sequence[bytes]) -> bytes:
    """One frame holding ``items`` in order."""
    ends = []
    end = 0
    for item in items:
        end += len(item)
        ends.append(end)
    return struct.pack(f"<{len(items) + 2}I", len(items), 0, *ends) + b"".join(items)


def _layout(frame: bytes) -> tuple[int, int, int]:
    """(count, base, where the data starts)."""
    n, base = _HEAD.unpack_from(frame)
    return n, base, 8 + 4 * n


def _end(frame: bytes, i: int, base: int) -> int:
    """Where item ``i`` ends in the data (item -1: the start)."""
    return _U32.unpack_from(frame, 8 + 4 * i)[0] - base if i >= 0 else 0


def unpack(frame: bytes) -> list[bytes]:
    """The items of a frame, in order."""
    n, base, data = _layout(frame)
    items = []
    start = data
    for end in struct.unpack_from(f"<{n}I", frame, 8):
        stop = data + end - base
        items.append(frame[start:stop])
        start = stop
    return items


def count(frame: bytes) -> int:
    return int(_HEAD.unpack_from(frame)[0])


def item(frame: bytes, i: int) -> bytes:
    """Item ``i`` of a frame."""
    _, base, data = _layout(frame)
    return frame[data + _end(frame, i - 1, base) : data + _end(frame, i, base)]


def split(frame: bytes, k: int) -> tuple[bytes, bytes]:
    """The first ``k`` items and the rest, each as a frame (a part of one item is that item itself, unframed).
    Costs a copy of the bytes, whatever the count."""
    n, base, data = _layout(frame)
    cut = _end(frame, k - 1, base)
    if k == 1:
        head = frame[data : data + cut]
    else:
        head = _HEAD.pack(k, base) + frame[8 : 8 + 4 * k] + frame[data : data + cut]
    if n - k == 1:
        tail = frame[data + cut :]
    else:
        tail = _HEAD.pack(n - k, base + cut) + frame[8 + 4 * k : data] + frame[data + cut :]
    return head, tail


def frame_or_item(items: Sequence[bytes]) -> bytes:
    """How a row of ``len(items)`` inputs keeps them: one input as itself, more as a frame."""
    return items[0] if len(items) == 1 else pack(items)
