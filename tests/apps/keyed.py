"""Spawn once per key (tests/e2e/test_keys.py): each run leaves a file, so a test counts how often code ran."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import shoal

app = shoal.App("tests-keyed")


@app.function(max_containers=4)
def once(directory: str, tag: str) -> str:
    Path(directory, f"{tag}-{os.getpid()}-{time.time_ns()}").touch()
    return tag


@app.function(max_containers=4)
def item(directory: str, x: int) -> int:
    Path(directory, f"item-{x}-{time.time_ns()}").touch()
    return x


@app.function()
@shoal.fastapi_endpoint(method="POST")
def kickoff(body: dict[str, Any]) -> dict[str, str]:
    """A batch's kickoff, which its HTTP client may retry: the request's key makes it start one batch."""
    n = int(body["n"])
    call = item.spawn_map_once(body["key"], [body["directory"]] * n, range(n))
    return {"job_id": call.object_id}


@app.function()
def lookup(call_id: str) -> str:
    """What a container is told of a call id its server does not know."""
    try:
        shoal.FunctionCall.from_id(call_id).get(timeout=5)
    except shoal.exception.NotFoundError as exc:
        return str(exc)
    return "found"
