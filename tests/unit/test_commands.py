"""The server's bookkeeping of ``shoal container exec`` (server/commands.py): one run per id, answered by the
container that was told, or by its end."""

from __future__ import annotations

import asyncio

import pytest

from shoal.protocol.messages import Command, CommandResult
from shoal.server.commands import Commands
from shoal.server.errors import Conflict
from shoal.server.liveness import Liveness


def test_a_command_is_ordered_once_per_id_and_answered_by_its_own_container_only():
    async def scenario() -> None:
        woken: list[str] = []
        liveness = Liveness(woken.append)
        commands = Commands(liveness)
        order = Command("ex-1", ["true"], timeout=5)
        first = asyncio.ensure_future(commands.run("ta-1", order))
        again = asyncio.ensure_future(commands.run("ta-1", order))  # a retried request: the same run
        await asyncio.sleep(0)
        assert liveness.take_commands("ta-1") == [order] and woken == ["ta-1"]
        with pytest.raises(Conflict, match="its own id"):
            await commands.run("ta-2", order)
        assert not commands.ended("ta-2", CommandResult("ex-1", 0))  # another container cannot answer it
        assert commands.ended("ta-1", CommandResult("ex-1", 0, b"out"))
        assert (await first).stdout == b"out" and (await again).stdout == b"out"
        assert commands._runs == {}

    asyncio.run(scenario())


def test_a_container_that_stops_answers_its_commands_with_why():
    async def scenario() -> None:
        commands = Commands(Liveness(lambda _: None))
        waiting = asyncio.ensure_future(commands.run("ta-1", Command("ex-2", ["sleep", "9"], timeout=5)))
        await asyncio.sleep(0)
        commands.gone("ta-1", "scaled down")
        result = await waiting
        assert result.code is None and result.error == "ta-1 stopped (scaled down)"
        assert commands._runs == {}

    asyncio.run(scenario())
