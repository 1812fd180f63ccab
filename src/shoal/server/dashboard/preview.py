"""A safe preview of a pickled value for people: the server never unpickles (pickles are loaded only inside
containers), so this reads the pickle's opcodes with :mod:`pickletools` and rebuilds plain data only (None,
bools, numbers, strings, bytes, lists, tuples, dicts, sets). Anything else shows as ``<module.Class>``: its name
is read from the stream, nothing is imported or called.
"""

from __future__ import annotations

import pickletools
from typing import Any

MAX_CHARS = 200


class _Opaque:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


_MARK = object()
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_CONTAINERS = {"EMPTY_LIST": list, "EMPTY_DICT": dict, "EMPTY_TUPLE": tuple, "EMPTY_SET": set}


def preview(data: bytes, limit: int = MAX_CHARS) -> str:
    """``repr`` of the plain data in a pickle, cut at ``limit`` characters; ``<...>`` for what is not plain."""
    try:
        text = repr(_rebuild(data))
    except Exception:  # noqa: BLE001 - anything unexpected in the stream: say what it is, not what it holds
        text = f"<pickle, {len(data)} bytes>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rebuild(data: bytes) -> Any:
    stack: list[Any] = []
    memo: dict[Any, Any] = {}
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name in ("PROTO", "FRAME", "STOP"):
            continue
        if name in _CONSTANTS:
            stack.append(_CONSTANTS[name])
        elif name in _CONTAINERS:
            stack.append(_CONTAINERS[name]())
        elif name == "MARK":
            stack.append(_MARK)
        elif name in ("MEMOIZE",):
            memo[len(memo)] = stack[-1]
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif op.arg is not None and name not in _STRUCTURAL and not name.endswith("GLOBAL"):
            stack.append(arg)  # ints, floats, strings, bytes: the opcode's argument is the value
        else:
            _apply(name, arg, stack)
    return stack[-1] if stack else None


_STRUCTURAL = {"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET", "EXT1", "EXT2", "EXT4"}


def _pop_mark(stack: list[Any]) -> list[Any]:
    i = len(stack) - 1
    while stack[i] is not _MARK:
        i -= 1
    items = stack[i + 1 :]
    del stack[i:]
    return items


def _apply(name: str, arg: Any, stack: list[Any]) -> None:
    if name in ("GLOBAL",):
        stack.append(_Opaque(f"<{str(arg).replace(' ', '.')}>"))
    elif name == "STACK_GLOBAL":
        attr, module = stack.pop(), stack.pop()
        stack.append(_Opaque(f"<{module}.{attr}>"))
    elif name == "APPEND":
        value = stack.pop()
        stack[-1].append(value)
    elif name == "APPENDS":
        items = _pop_mark(stack)
        stack[-1].extend(items)
    elif name == "SETITEM":
        value, key = stack.pop(), stack.pop()
        stack[-1][key] = value
    elif name == "SETITEMS":
        items = _pop_mark(stack)
        stack[-1].update(zip(items[::2], items[1::2]))
    elif name == "ADDITEMS":
        items = _pop_mark(stack)
        stack[-1].update(items)
    elif name in ("TUPLE", "FROZENSET", "LIST", "DICT"):
        items = _pop_mark(stack)
        made = {"TUPLE": tuple, "FROZENSET": frozenset, "LIST": list}.get(name)
        stack.append(made(items) if made else dict(zip(items[::2], items[1::2])))
    elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
        n = int(name[-1])
        items = stack[-n:]
        del stack[-n:]
        stack.append(tuple(items))
    elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD", "OBJ", "INST"):
        _construct(name, stack)
    elif name == "POP":
        stack.pop()
    elif name == "POP_MARK":
        _pop_mark(stack)
    elif name == "DUP":
        stack.append(stack[-1])
    else:
        raise ValueError(f"opcode {name} is not previewed")


def _construct(name: str, stack: list[Any]) -> None:
    """An object built by calling something: keep only the callable's name (nothing is called)."""
    if name == "BUILD":
        stack.pop()  # the state set on the object below
        return
    if name in ("OBJ", "INST"):
        items = _pop_mark(stack)
        stack.append(_Opaque(repr(items[0]) if items else "<object>"))
        return
    if name == "NEWOBJ_EX":
        stack.pop()
    stack.pop()  # the arguments
    target = stack.pop()
    stack.append(target if isinstance(target, _Opaque) else _Opaque("<object>"))
