"""Object ids: a Modal-style prefix and random hex, so an id says what it names."""

from __future__ import annotations

import secrets

PREFIXES = {"app": "ap", "function": "fu", "call": "fc", "container": "ta", "input": "in", "secret": "st"}


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}-{secrets.token_hex(10)}"


def input_id(call_id: str, index: int) -> str:
    """The id of one input of a call (``in-<call hex>-<index>``)."""
    return f"in-{call_id.split('-', 1)[1]}-{index}"


def kind_of(object_id: str) -> str | None:
    prefix = object_id.split("-", 1)[0]
    return next((kind for kind, p in PREFIXES.items() if p == prefix), None)
