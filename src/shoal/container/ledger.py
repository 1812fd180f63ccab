"""The chunks a container leased, so that it runs their inputs one by one but reports a chunk as one.

The control plane leases a map's inputs in chunks (one row for many inputs, ``protocol/chunks.py``). The runtime
never sees them: :meth:`ChunkLedger.expand` turns a leased chunk into its inputs, and :meth:`ChunkLedger.merge`
turns the reports of a chunk's inputs back into one report when every one of them succeeded and they go in the
same request. Anything else (a failure, a cancel, a part of a chunk reported early, inputs given back) goes input
by input, and the control plane splits the chunk's row to match.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..protocol import chunks
from ..protocol.messages import LeasedInput, OutputStatus, Release, ReportedOutput
from ..protocol.payloads import INLINE_TAG

ChunkKey = tuple[str, int]  # (call, lease)
ChunkSpan = tuple[str, int, int, int]  # (call, lease, first index, count)
T = TypeVar("T", ReportedOutput, Release)
SUCCESS = OutputStatus.SUCCESS


class ChunkLedger:
    """Open chunks of one container (shared by its threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[ChunkKey, dict[int, int]] = {}  # (call, lease) -> {first index: count}

    def expand(self, leased: Sequence[LeasedInput]) -> list[LeasedInput]:
        """The inputs of what was leased, a chunk's one by one."""
        out: list[LeasedInput] = []
        for lease in leased:
            if lease.count == 1:
                out.append(lease)
                continue
            with self._lock:
                self._open.setdefault((lease.call_id, lease.lease), {})[lease.index] = lease.count
            items = chunks.unpack(lease.payload)
            out += [LeasedInput(lease.call_id, lease.index + i, lease.lease, p) for i, p in enumerate(items)]
        return out

    def _chunk_of(self, call_id: str, index: int, lease: int) -> tuple[int, int] | None:
        for first, count in self._open.get((call_id, lease), {}).items():
            if first <= index < first + count:
                return first, count
        return None

    def _close(self, call_id: str, lease: int, first: int) -> None:
        spans = self._open.get((call_id, lease))
        if spans is not None:
            spans.pop(first, None)
            if not spans:
                del self._open[(call_id, lease)]

    def _by_chunk(self, items: Sequence[T]) -> tuple[list[T], dict[ChunkSpan, list[T]]]:
        """``items`` (reports or releases) that belong to no open chunk, and the others by chunk: (call, lease,
        first index, count). The chunks found are closed: reported, whole or in part, they are done here."""
        alone: list[T] = []
        parts: dict[ChunkSpan, list[T]] = {}
        last: ChunkSpan | None = None  # the chunk found last (a report's neighbours share it)
        for r in items:
            if last is None or not (
                r.call_id == last[0] and r.lease == last[1] and last[2] <= r.index < last[2] + last[3]
            ):
                found: tuple[int, int] | None = self._chunk_of(r.call_id, r.index, r.lease) if r.count == 1 else None
                if found is None:
                    alone.append(r)
                    continue
                last = (r.call_id, r.lease, found[0], found[1])
            parts.setdefault(last, []).append(r)
        for call_id, lease, first, _ in parts:
            self._close(call_id, lease, first)
        return alone, parts

    def merge(self, reports: Sequence[ReportedOutput]) -> list[ReportedOutput]:
        """The reports to send: a chunk whose inputs all succeeded, all here, as one; the rest as they are."""
        return self._regroup(reports, _joined_report)

    def merge_released(self, released: Sequence[Release]) -> list[Release]:
        """Inputs given back: a whole chunk as one, the rest as they are."""
        return self._regroup(released, _joined_release)

    def _regroup(self, items: Sequence[T], join: Callable[[ChunkSpan, list[T]], list[T]]) -> list[T]:
        """``items`` of no open chunk as they are, and each chunk's as ``join`` makes them."""
        with self._lock:
            if not self._open:
                return list(items)
            out, parts = self._by_chunk(items)
            for span, got in parts.items():
                out += join(span, got)
            return out


def _joined_report(span: ChunkSpan, got: list[ReportedOutput]) -> list[ReportedOutput]:
    """One report for a chunk whose inputs all succeeded inline (a result that went to the blob store goes alone:
    the server keeps track of which blobs are used); otherwise the reports as they are."""
    call_id, lease, first, count = span
    whole = len(got) == count and all(r.status == SUCCESS and r.data[:1] == INLINE_TAG for r in got)
    if whole and any(r.index != first + i for i, r in enumerate(got)):
        got.sort(key=lambda r: r.index)
        whole = all(r.index == first + i for i, r in enumerate(got))
    if not whole:
        return got
    data = chunks.pack([r.data for r in got])
    return [ReportedOutput(call_id, first, lease, SUCCESS, data, sum(r.duration for r in got), count=count)]


def _joined_release(span: ChunkSpan, got: list[Release]) -> list[Release]:
    """One release for a whole chunk given back; otherwise the releases as they are."""
    call_id, lease, first, count = span
    whole = sorted(r.index for r in got) == list(range(first, first + count))
    return [Release(call_id, first, lease, count)] if whole else got
