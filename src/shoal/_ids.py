"""Object ids: a Modal-style prefix and random hex, so an id says what it names."""

from __future__ import annotations

import secrets

PREFIXES = {"app": "ap", "function": "fu", "call": "fc", "container": "ta", "input": "in", "secret": "st"}


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}-{secrets.token_hex(10)}"


def input_id(call_id: str, index: int) -> str:
    """The id of one input of a call (``in-<call hex>-<index>``)."""
    return f"in-{call_id.split('-', 1)[1]}-{index}"


def call_of_input(input_id: str) -> str:
    """The call an input (``in-<call hex>-<index>``) belongs to (``fc-<call hex>``)."""
    return f"{PREFIXES['call']}-{input_id.split('-')[1]}"


def kind_of(object_id: str) -> str | None:
    prefix = object_id.split("-", 1)[0]
    return next((kind for kind, p in PREFIXES.items() if p == prefix), None)
