"""Spawn once per key (issue 29, item 2): the same key on the same function is one call, whoever spawns it and
however often; a kickoff endpoint its client retried starts one batch."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import shoal
from shoal.exception import InvalidError, NotFoundError
from tests.conftest import REPO, shared_dir
from tests.e2e.test_cli import shoal_cli

KEYED = str(REPO / "tests" / "apps" / "keyed.py")
SPAWN = (
    "import shoal, sys\n"
    "f = shoal.Function.from_name('tests-keyed', 'once')\n"
    "print(f.spawn_once(sys.argv[1], sys.argv[2], 'a').object_id)\n"
)


@pytest.fixture(scope="module")
def deployed(server):  # noqa: ANN001, ANN201
    done = shoal_cli("deploy", KEYED)
    assert done.returncode == 0, done.stderr
    return server


def test_the_same_key_from_two_processes_is_one_call_and_runs_once(deployed):
    directory, key = shared_dir(), f"order-{time.time_ns()}"
    spawners = [subprocess.Popen([sys.executable, "-c", SPAWN, key, directory], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    ids = set()
    for proc in spawners:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ids.add(out.strip())
    assert len(ids) == 1, ids
    [call_id] = ids
    assert shoal.FunctionCall.from_id(call_id).get(timeout=60) == "a"
    assert len(list(Path(directory).glob("a-*"))) == 1  # it ran once
    once = shoal.Function.from_name("tests-keyed", "once")
    assert shoal.FunctionCall.from_key(once, key).object_id == call_id
    assert once.spawn_once(key, directory, "b").object_id == call_id  # later too: nothing runs
    assert not list(Path(directory).glob("b-*"))
    other = once.spawn_once(key + "-other", directory, "c")  # another key is another call
    assert other.object_id != call_id and other.get(timeout=60) == "c"
    with pytest.raises(NotFoundError, match="holds the key"):
        shoal.FunctionCall.from_key(once, "never-used")
    with pytest.raises(InvalidError, match="1 to 256 characters"):
        once.spawn_once("", directory, "d")


def test_a_retried_kickoff_endpoint_starts_one_batch(deployed):
    url = shoal.Function.from_name("tests-keyed", "kickoff").get_web_url()
    assert url
    directory, key = shared_dir(), f"batch-{time.time_ns()}"
    body = {"key": key, "directory": directory, "n": 20}
    first = httpx.post(url, json=body, timeout=120).json()["job_id"]
    again = httpx.post(url, json=body, timeout=120).json()["job_id"]  # the client retried
    assert first == again
    assert list(shoal.FunctionCall.from_id(first).iter()) == list(range(20))
    assert len(list(Path(directory).glob("item-*"))) == 20  # one batch: every item ran once


def test_an_unknown_call_id_asked_in_a_container_is_explained_for_a_container(deployed):
    said = shoal.Function.from_name("tests-keyed", "lookup").remote("fc-0000000000000000unknown")
    assert "The Shoal server running this container does not know function call" in said
    assert "shoal server" not in said  # no advice to start a server, which a container cannot act on
