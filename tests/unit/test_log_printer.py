"""Container output on the terminal: lines from several containers never cut into each other."""

from __future__ import annotations

import pytest

from shoal._output import LogPrinter


def test_a_line_that_arrives_in_two_pieces_is_printed_whole_even_when_others_come_between(
    capsys: pytest.CaptureFixture[str],
):
    # Given container A's line shipped in two pieces (text, then its newline) with B's line in between
    printer = LogPrinter()
    printer.write([[1, "stdout", "input 3 line 1", "ta-A"], [2, "stdout", "input 1 line 9\n", "ta-B"],
                   [3, "stdout", "\n", "ta-A"], [4, "stdout", "no newline yet", "ta-B"]])  # fmt: skip
    printer.finish()
    # Then each line is printed whole, with its container, and an unfinished one at the end
    assert capsys.readouterr().out.splitlines() == [
        "[ta-B] input 1 line 9", "[ta-A] input 3 line 1", "[ta-B] no newline yet",
    ]  # fmt: skip
