"""Capture the user's stdout/stderr per input and ship it to the server in batches.

Bursts are bounded: a request carries at most ``SHIP_BYTES`` of output (the heartbeat thread sends the next one at
once while more waits), a writer that gets ``MAX_PENDING`` ahead of shipping waits for it (as a full pipe
would), and a container's output past its budget (``SHOAL_LOG_BUDGET_MIB``, 100 MiB) is dropped after one line
that says so: nothing below the budget is lost, and a runaway loop of prints cannot fill the server's disk.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

from .._context import _current_input
from ..redaction import Redactor

MERGE_LIMIT = 64 * 1024  # characters: a longer unfinished line is shipped in pieces
SHIP_BYTES = 1 << 20  # characters of output in one request at most
MAX_PENDING = 16 << 20  # characters a writer may get ahead of shipping before it waits
PENDING_WAIT = 5.0  # seconds a writer waits at most for shipping to catch up (then it goes on: never a deadlock)


class LogBuffer:
    """Lines written by user code, tagged with the input that was running, waiting to be shipped."""

    def __init__(self, redact: Redactor | None = None, budget: int = 100 << 20) -> None:
        self._lock = threading.Lock()
        self._shipped = threading.Condition(self._lock)
        self._ship = threading.Lock()
        self._entries: list[list[Any]] = []
        self._pending = 0  # characters of the entries not shipped yet
        self.redact = redact or Redactor()
        self.written = False  # anything written since the streams were last flushed (see TeeStream.flush)
        self.budget = budget  # characters this container may write in all
        self.total = 0
        self.truncated = False

    def add(self, stream: str, text: str) -> None:
        """Record a write; one that continues an unfinished line of the same stream and input joins its entry
        (``print`` writes the text and its newline separately: one entry per line, not two)."""
        current = _current_input.get()
        call_id, index = current if current else (None, None)
        self.written = True
        with self._lock:
            if not self._within_budget(call_id, index, stream, text):
                return
            if self._pending > MAX_PENDING:
                self._shipped.wait_for(lambda: self._pending <= MAX_PENDING, PENDING_WAIT)
            self._pending += len(text)
            last = self._entries[-1] if self._entries else None
            if (last is not None and last[0] == call_id and last[1] == index and last[2] == stream
                    and not last[3].endswith("\n") and len(last[3]) < MERGE_LIMIT):  # fmt: skip
                last[3] += text
            else:
                self._entries.append([call_id, index, stream, text, time.time()])

    def _within_budget(self, call_id: str | None, index: int | None, stream: str, text: str) -> bool:
        """Count ``text`` against the budget; past it, one line says so and the rest is dropped (lock held)."""
        self.total += len(text)
        if self.total <= self.budget:
            return True
        if not self.truncated:
            self.truncated = True
            note = (f"[output truncated: this container wrote more than {self.budget >> 20} MiB of logs; the rest "
                    "is dropped. Write bulky output to a Volume, or raise SHOAL_LOG_BUDGET_MIB]\n")  # fmt: skip
            self._entries.append([call_id, index, stream, note, time.time()])
            self._pending += len(note)
        return False

    def drain(self, limit: int | None = None) -> list[list[Any]]:
        """The entries waiting, oldest first: all of them, or about ``limit`` characters (at least one entry)."""
        with self._lock:
            if limit is None:
                entries, self._entries = self._entries, []
            else:
                size = count = 0
                while count < len(self._entries) and (count == 0 or size + len(self._entries[count][3]) <= limit):
                    size += len(self._entries[count][3])
                    count += 1
                entries, self._entries = self._entries[:count], self._entries[count:]
            self._pending -= sum(len(e[3]) for e in entries)
            self._shipped.notify_all()
        return entries

    def pending(self) -> bool:
        """Whether lines wait to be shipped."""
        with self._lock:
            return bool(self._entries)

    @contextlib.contextmanager
    def shipping(self, wait: float = 0.0) -> Iterator[list[list[Any]]]:
        """The entries to send with one request. One request ships at a time, so entries reach the server in the
        order they were written; a request that fails puts its entries back. ``wait``: how long to wait for
        another thread's request that carries logs now (0: send none with this one)."""
        if not self._ship.acquire(timeout=wait) if wait > 0 else not self._ship.acquire(blocking=False):
            yield []
            return
        entries = self.drain(SHIP_BYTES)
        try:
            yield entries
        except BaseException:
            self.restore(entries)
            raise
        finally:
            self._ship.release()

    def restore(self, entries: list[list[Any]]) -> None:
        """Put back entries whose shipping failed, ahead of newer ones (order kept, nothing dropped)."""
        if entries:
            with self._lock:
                self._entries[:0] = entries
                self._pending += sum(len(e[3]) for e in entries)


class TeeStream(io.TextIOBase):
    """A text stream that writes through to the real one (the container's log file) and records the text.

    Text is redacted a whole line at a time: a secret written in two ``write()`` calls (``print(a, b, sep="")``,
    a loop of characters) is still one line when it is redacted. An unfinished line waits for its end, a flush,
    or ``MERGE_LIMIT`` characters (then it goes out in pieces cut where no secret value is split)."""

    def __init__(self, original: TextIO, name: str, buffer: LogBuffer) -> None:
        self._original = original
        self._name = name
        self._buffer = buffer
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            pending = self._pending + text
            end = pending.rfind("\n") + 1
            if len(pending) - end > MERGE_LIMIT:
                end = self._buffer.redact.safe_cut(pending, len(pending) - MERGE_LIMIT // 2)
            self._pending = pending[end:]
            self._emit(pending[:end])
        return len(text)

    def _emit(self, text: str) -> None:
        if text:
            clean = self._buffer.redact(text)
            if not self._buffer.truncated:  # the raw log file is bounded by the same budget
                self._original.write(clean)
            self._buffer.add(self._name, clean)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, ""
            self._emit(pending)
        self._buffer.written = False
        self._original.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._original.fileno()


def install(buffer: LogBuffer) -> None:
    sys.stdout = TeeStream(sys.__stdout__, "stdout", buffer)  # type: ignore[arg-type]
    sys.stderr = TeeStream(sys.__stderr__, "stderr", buffer)  # type: ignore[arg-type]
