"""Object ids: a Modal-style prefix and random hex, so an id says what it names."""

from __future__ import annotations

import secrets

PREFIXES = {"app": "ap", "function": "fu", "call": "fc", "container": "ta", "input": "in", "secret": "st", "exec": "ex"}


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}-{secrets.token_hex(10)}"


def input_id(call_id: str, index: int) -> str:
    """The id of one input of a call (``in-<call hex>-<index>``)."""
    return f"{inputs_prefix(call_id)}{index}"


def inputs_prefix(call_id: str) -> str:
    """What the ids of every input of a call start with (``in-<call hex>-``)."""
    return f"{PREFIXES['input']}-{call_id.split('-', 1)[1]}-"


def index_of_input(input_id: str) -> int:
    """The index of an input within its call."""
    return int(input_id.rsplit("-", 1)[1])


def call_of_input(input_id: str) -> str:
    """The call an input (``in-<call hex>-<index>``) belongs to (``fc-<call hex>``)."""
    return f"{PREFIXES['call']}-{input_id.split('-')[1]}"


def kind_of(object_id: str) -> str | None:
    prefix = object_id.split("-", 1)[0]
    return next((kind for kind, p in PREFIXES.items() if p == prefix), None)
