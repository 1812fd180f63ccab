"""What a person sees: container output (prefixed when several containers write), lifecycle lines, and live
progress bars for maps. Progress bars and lifecycle lines appear inside ``enable_output()`` (``shoal run``
turns it on) when stdout is a terminal; container output is always streamed.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_enabled = 0
_show_progress = True
_progress: Any = None


@contextlib.contextmanager
def enable_output(show_progress: bool = True) -> Iterator[None]:
    """Show lifecycle lines and live progress bars (when stdout is a terminal) inside the block."""
    global _enabled, _show_progress
    with _lock:
        _enabled += 1
        previous, _show_progress = _show_progress, show_progress
    try:
        yield
    finally:
        with _lock:
            _enabled -= 1
            _show_progress = previous
        if _enabled == 0:
            stop_progress()


def output_enabled() -> bool:
    return _enabled > 0


def _progress_instance() -> Any:
    global _progress
    with _lock:
        if _progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            _progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("[red]{task.fields[failed]}"), TextColumn("{task.fields[rate]}/s"),
                TimeRemainingColumn(), transient=False,
            )  # fmt: skip
            _progress.start()
        return _progress


def stop_progress() -> None:
    global _progress
    with _lock:
        progress, _progress = _progress, None
    if progress is not None:
        progress.stop()


class MapProgress:
    """A progress bar for one map: completed, failed and cancelled against the inputs submitted so far (a
    cancelled input did not fail: it is counted apart)."""

    def __init__(self, description: str) -> None:
        self.active = output_enabled() and _show_progress and sys.stdout.isatty()
        self.done = self.failed = self.cancelled = self.total = 0
        self.started = time.monotonic()
        if self.active:
            self.progress = _progress_instance()
            self.task = self.progress.add_task(description, total=None, failed=self.ended(), rate="0")

    def ended(self) -> str:
        """The bar's words for the inputs that did not succeed."""
        words = f"{self.failed} failed"
        return words + f", {self.cancelled} cancelled" if self.cancelled else words

    def submitted(self, total: int) -> None:
        self.total = total
        if self.active:
            self.progress.update(self.task, total=total)

    def completed(self, ok: int, failed: int, cancelled: int = 0) -> None:
        self.done += ok + failed + cancelled
        self.failed += failed
        self.cancelled += cancelled
        if self.active:
            rate = self.done / max(time.monotonic() - self.started, 1e-6)
            self.progress.update(self.task, completed=self.done, failed=self.ended(), rate=f"{rate:,.0f}")


class LogPrinter:
    """Writes container output to this terminal; prefixes lines with the container id once several write."""

    def __init__(self) -> None:
        self.containers: set[str] = set()
        self.at_line_start: dict[str, bool] = {}
        # An unfinished line waits for its end, so that other containers' lines never land inside it (a line can
        # reach the server in two pieces when the container shipped its logs between a print's text and newline).
        self.partial: dict[tuple[str, str], str] = {}

    def write(self, rows: list[list[Any]]) -> None:
        for _seq, stream, text, container in rows:
            if stream == "system":
                if output_enabled():
                    sys.stderr.write(f"  {text}")
                continue
            key = (container or "", stream)
            self.containers.add(key[0])
            whole, _, rest = (self.partial.pop(key, "") + text).rpartition("\n")
            if rest:
                self.partial[key] = rest
            if whole or _:
                self._emit(key, whole + "\n")
        sys.stdout.flush()
        sys.stderr.flush()

    def finish(self) -> None:
        """Write what is left of unfinished lines (the run ended)."""
        for key, text in self.partial.items():
            self._emit(key, text)
        self.partial.clear()
        sys.stdout.flush()
        sys.stderr.flush()

    def _emit(self, key: tuple[str, str], text: str) -> None:
        container, stream = key
        self.containers.add(container)
        target = sys.stderr if stream == "stderr" else sys.stdout
        target.write(self._prefixed(container, text) if len(self.containers) > 1 else text)

    def _prefixed(self, container: str, text: str) -> str:
        prefix = f"[{container[:11]}] "
        out = []
        for line in text.splitlines(keepends=True):
            out.append((prefix if self.at_line_start.get(container, True) else "") + line)
            self.at_line_start[container] = line.endswith("\n")
        return "".join(out)
