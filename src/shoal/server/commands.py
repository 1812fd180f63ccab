"""Commands run in containers (``shoal container exec``): each is an order to its container, carried by the reply
to its next exchange or heartbeat (:class:`Liveness`), and its result comes back on the container's own route.

The caller's request waits here for that result. A command is known by the caller's ``exec_id``, so a request
sent again (a retry after a dropped connection) waits for the same run instead of starting a second one. A
container that stops before its command ends answers the wait with why; nothing is kept once the result is
taken (results live in memory only: after a restart the containers are gone too).
"""

from __future__ import annotations

import asyncio

import msgspec

from ..protocol.messages import Command, CommandResult
from .errors import Conflict
from .liveness import Liveness

ANSWER_GRACE = 10.0  # seconds past a command's own timeout for its container to report how it ended


class _Run(msgspec.Struct):
    container_id: str
    result: asyncio.Future[CommandResult]
    waiters: int = 0


class Commands:
    def __init__(self, liveness: Liveness) -> None:
        self.liveness = liveness
        self._runs: dict[str, _Run] = {}

    async def run(self, container_id: str, command: Command) -> CommandResult:
        """Order ``command`` in the container (once per ``exec_id``) and wait for how it ended."""
        run = self._runs.get(command.exec_id)
        if run is not None and run.container_id != container_id:
            raise Conflict(f"command {command.exec_id} runs in {run.container_id}, not {container_id}: give each "
                           "command its own id")  # fmt: skip
        if run is None:
            run = self._runs[command.exec_id] = _Run(container_id, asyncio.get_running_loop().create_future())
            self.liveness.run(container_id, command)  # it wakes the container's held requests
        run.waiters += 1
        try:
            return await asyncio.wait_for(asyncio.shield(run.result), command.timeout + ANSWER_GRACE)
        except asyncio.TimeoutError:
            return CommandResult(command.exec_id, None, error=f"{container_id} did not say how the command ended "
                                 f"within {command.timeout + ANSWER_GRACE:.0f}s")  # fmt: skip
        finally:
            run.waiters -= 1
            if not run.waiters and run.result.done():
                self._runs.pop(command.exec_id, None)

    def ended(self, container_id: str, result: CommandResult) -> bool:
        """The container says how a command it was ordered ended; False when no such command waits for it."""
        run = self._runs.get(result.exec_id)
        if run is None or run.container_id != container_id or run.result.done():
            return False
        run.result.set_result(result)
        if not run.waiters:
            self._runs.pop(result.exec_id, None)
        return True

    def gone(self, container_id: str, why: str) -> None:
        """The container stopped: its commands that have not ended never will."""
        for exec_id, run in list(self._runs.items()):
            if run.container_id == container_id and not run.result.done():
                run.result.set_result(CommandResult(exec_id, None, error=f"{container_id} stopped ({why})"))
                if not run.waiters:  # nobody waits any more (the caller gave up): nothing to keep
                    del self._runs[exec_id]
