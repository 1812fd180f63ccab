"""Chunk frames (protocol/chunks.py) and a container's chunk ledger (container/ledger.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shoal.container.ledger import ChunkLedger
from shoal.protocol import chunks
from shoal.protocol.messages import LeasedInput, OutputStatus, Release, ReportedOutput

items = st.lists(st.binary(max_size=40), min_size=2, max_size=30)


@given(items)
def test_a_frame_gives_back_its_items(values: list[bytes]) -> None:
    frame = chunks.pack(values)
    assert chunks.unpack(frame) == values
    assert chunks.count(frame) == len(values)
    assert [chunks.item(frame, i) for i in range(len(values))] == values


@given(items, st.data())
def test_a_split_frame_is_its_two_parts(values: list[bytes], data: st.DataObject) -> None:
    k = data.draw(st.integers(1, len(values) - 1))
    head, tail = chunks.split(chunks.pack(values), k)
    assert (head if k == 1 else chunks.unpack(head)) == (values[0] if k == 1 else values[:k])
    rest = values[k:]
    assert (tail if len(rest) == 1 else chunks.unpack(tail)) == (rest[0] if len(rest) == 1 else rest)


def ok(index: int, data: bytes = b"Iok", lease: int = 1) -> ReportedOutput:
    return ReportedOutput("fc-1", index, lease, OutputStatus.SUCCESS, data, 0.25)


def test_the_ledger_runs_a_chunk_input_by_input_and_reports_it_as_one() -> None:
    ledger = ChunkLedger()
    leased = ledger.expand([LeasedInput("fc-1", 4, 1, chunks.pack([b"Ia", b"Ib", b"Ic"]), 3)])
    assert [(x.index, x.payload, x.count) for x in leased] == [(4, b"Ia", 1), (5, b"Ib", 1), (6, b"Ic", 1)]
    other = ReportedOutput("fc-2", 0, 1, OutputStatus.FAILURE, b"Ierr")
    (kept, merged) = ledger.merge([ok(6, b"I6"), ok(4, b"I4"), other, ok(5, b"I5")])
    assert kept == other
    assert (merged.index, merged.count, merged.duration) == (4, 3, 0.75)
    assert chunks.unpack(merged.data) == [b"I4", b"I5", b"I6"]
    assert ledger.merge([ok(4)]) == [ok(4)]  # reported: the chunk is no longer open


def test_a_chunk_with_a_failure_or_reported_in_parts_goes_input_by_input() -> None:
    ledger = ChunkLedger()
    ledger.expand([LeasedInput("fc-1", 0, 1, chunks.pack([b"Ia", b"Ib"]), 2), LeasedInput("fc-1", 2, 1, b"", 1)])
    failed = ReportedOutput("fc-1", 1, 1, OutputStatus.FAILURE, b"Ierr")
    assert ledger.merge([ok(0), failed]) == [ok(0), failed]
    ledger.expand([LeasedInput("fc-1", 10, 2, chunks.pack([b"Ia", b"Ib"]), 2)])
    assert ledger.merge([ok(10, lease=2)]) == [ok(10, lease=2)]
    assert ledger.merge([ok(11, lease=2)]) == [ok(11, lease=2)]


def test_the_ledger_gives_back_a_whole_chunk_as_one() -> None:
    ledger = ChunkLedger()
    ledger.expand([LeasedInput("fc-1", 0, 3, chunks.pack([b"Ia", b"Ib"]), 2)])
    ledger.expand([LeasedInput("fc-1", 2, 3, chunks.pack([b"Ia", b"Ib"]), 2)])
    released = ledger.merge_released([Release("fc-1", i, 3) for i in (1, 0, 3)])
    assert released == [Release("fc-1", 0, 3, 2), Release("fc-1", 3, 3)]
