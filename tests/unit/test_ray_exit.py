"""How the Ray bridge reads a container's end (``Bridge._exit_of``), with a stand-in actor handle: a death by
signal whose actor is gone too is a node lost (None), one whose actor still answers is the process's own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shoal.backends import ray_bridge
from shoal.backends.ray_bridge import Bridge


class Handle:
    """An actor handle whose ``tail`` answers, or fails as a dead actor's call does."""

    def __init__(self, alive: bool) -> None:
        self.alive = alive
        outer = self

        class Tail:
            @staticmethod
            def remote() -> Any:
                return outer._tail()

        self.tail = Tail()

    async def _tail(self) -> str:
        if not self.alive:
            raise RuntimeError("ActorDiedError: the actor died with its node")
        return "last words"


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Bridge:
    monkeypatch.setattr(ray_bridge, "NODE_LOSS_SETTLE", 0.0)
    made = Bridge.__new__(Bridge)  # no Ray: only what _exit_of reads
    made.tails, made.terminating = {}, set()
    return made


def test_a_killed_container_whose_actor_is_gone_was_lost_with_its_node(backend: Bridge) -> None:
    assert asyncio.run(backend._exit_of("ta-1", Handle(alive=False), -9)) is None


def test_a_killed_container_whose_actor_answers_died_alone(backend: Bridge) -> None:
    assert asyncio.run(backend._exit_of("ta-1", Handle(alive=True), -9)) == -9
    assert backend.tails["ta-1"] == "last words"


def test_an_ordinary_exit_or_a_kill_of_the_control_planes_is_never_a_loss(backend: Bridge) -> None:
    assert asyncio.run(backend._exit_of("ta-1", Handle(alive=False), 1)) == 1
    backend.terminating.add("ta-2")
    assert asyncio.run(backend._exit_of("ta-2", Handle(alive=False), -9)) == -9
