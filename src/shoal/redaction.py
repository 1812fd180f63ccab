"""Hiding secret values in text: what a container prints, the errors it raises, and the raw output tail the
server puts in a crashed container's error. One rule for both sides."""

from __future__ import annotations

from collections.abc import Iterable


class Redactor:
    """Replaces secret values with ``***`` (values shorter than 3 characters are left: they would mangle text)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values = sorted({v for v in values if len(v) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, "***")
        return text

    def safe_cut(self, text: str, cut: int) -> int:
        """A place at or before ``cut`` where no secret value of ``text`` is split in two."""
        for value in self.values:
            start = text.find(value, max(0, cut - len(value) + 1))
            while 0 <= start < cut:
                if start + len(value) > cut:
                    cut = start
                start = text.find(value, start + 1)
        return cut
