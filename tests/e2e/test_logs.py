"""Logs from code and from the CLI, as Modal 1.5 reads them (issue 25, items 8 and 9): ``FunctionCall.logs``,
``Function.logs`` and ``App.logs`` with ``fetch``/``tail``/``stream`` (and ``.aio``), and ``shoal app logs`` with
``--source``, ``--function``, ``--function-call``, ``--search``, ``--since``/``--until`` and ``--tail``."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

import shoal
from shoal.logs import LogEntry
from tests.apps import logging_app as la
from tests.e2e.test_cli import shoal_cli


def lines(entries: list[LogEntry]) -> list[str]:
    return "".join(e.message for e in entries).splitlines()


def test_logs_from_code_fetch_tail_and_stream_what_each_object_wrote(server):
    with la.app.run(show_logs=False):
        since = datetime.now(timezone.utc) - timedelta(seconds=1)
        call = la.speak.spawn_map(range(3))
        assert list(call.iter()) == [0, 1, 2]
        assert la.other.remote(7) == 7
        # a call's lines, every stream, then only its stderr, each entry saying where it came from
        assert sorted(x for x in lines(list(call.logs.fetch(since=since))) if x[:3] in ("out", "err")) == [
            "err 0", "err 1", "err 2", "out 0", "out 1", "out 2"]  # fmt: skip
        errors = list(call.logs.fetch(since=since, source="stderr"))
        assert sorted(lines(errors)) == ["err 0", "err 1", "err 2"]
        assert {e.source for e in errors} == {"stderr"} and {e.object_id for e in errors} == {call.object_id}
        assert all(e.context_ids[0].startswith("in-") and e.timestamp >= since for e in errors)
        # a function's last lines hold none of another function's; the app's, searched, hold the other's
        mine = lines(list(la.speak.logs.tail(50)))
        assert "out 2" in mine and "other 7" not in mine
        assert lines(list(la.app.logs.fetch(since=since, search_text="OTHER", source="stdout"))) == ["other 7"]
        assert list(call.logs.fetch(since=datetime.now(timezone.utc) + timedelta(hours=1))) == []
        # a call's stream yields its lines as they come and ends once the call has finished
        late, started = la.slow_speak.spawn(5), time.monotonic()
        assert "late 5" in lines(list(late.logs.stream()))
        assert time.monotonic() - started < 8  # it ends with the call (~1 s), not after a long poll's 10 s

        async def streamed() -> list[str]:
            started = la.slow_speak.spawn(6)
            return lines([e async for e in started.logs.stream.aio()])

        assert "late 6" in asyncio.run(streamed())
        # a stream with a timeout ends when nothing comes for that long
        assert list(la.app.logs.stream(timeout=0.5)) == []
        with pytest.raises(shoal.exception.InvalidError, match="source"):
            list(call.logs.tail(5, source="stdin"))  # type: ignore[arg-type]
        app_id = la.app.app_id
        # the CLI filters the same way
        errors_cli = shoal_cli("app", "logs", app_id or "", "--source", "stderr", "--function", "speak")
        assert sorted(errors_cli.stderr.splitlines()) == ["err 0", "err 1", "err 2"], errors_cli.stderr
        assert errors_cli.stdout == ""  # (a container's stderr lines go to the terminal's stderr)
        searched = shoal_cli("app", "logs", app_id or "", "--search", "other", "--source", "stdout")
        assert searched.stdout.splitlines() == ["other 7"], searched.stderr
        by_call = shoal_cli("app", "logs", app_id or "", "--function-call", call.object_id, "--source", "stdout")
        assert sorted(by_call.stdout.splitlines()) == ["out 0", "out 1", "out 2"], by_call.stderr
        assert shoal_cli("app", "logs", app_id or "", "--search", "other", "--until", "1h").stdout == ""
        assert shoal_cli("app", "logs", app_id or "", "--source", "stdout", "--function", "speak", "--tail",
                         "1").stdout.splitlines()[-1] in ("out 0", "out 1", "out 2")  # fmt: skip
