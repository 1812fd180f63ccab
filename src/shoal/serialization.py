"""cloudpickle payloads, exceptions with their remote tracebacks, and the failure record format.

The server never calls anything here that unpickles: it treats payloads as opaque bytes.
"""

from __future__ import annotations

import io
import os
import pickle
import threading
import traceback
from typing import Any

import cloudpickle

from .exception import DeserializationError, ExecutionError, RemoteTraceback, SerializationError


class _NotPlain(Exception):
    pass


class _PlainPickler(pickle.Pickler):
    """The stdlib's C pickler, for plain data only: it stops at the first object that is not a built-in value or
    container (the only objects it asks ``reducer_override`` about), which then goes to cloudpickle."""

    def reducer_override(self, obj: Any) -> Any:
        raise _NotPlain


_plain = threading.local()  # a pickler and its buffer per thread, reused (making them costs more than the pickling)
LARGE_PICKLE = 64 * 1024  # bytes: after a pickle this large, the next one gets a fresh buffer (see dumps)


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``: plain data (numbers, strings, bytes, and lists, tuples, dicts and sets of them) with the
    stdlib's pickler, about 5x faster for small values; anything else with cloudpickle (functions and classes by
    value). Both make the same bytes for plain data, and either loads with ``pickle.loads``."""
    pair = getattr(_plain, "pair", None)
    if pair is None:
        buffer = io.BytesIO()
        pair = _plain.pair = (buffer, _PlainPickler(buffer, pickle.HIGHEST_PROTOCOL))
    buffer, pickler = pair
    buffer.seek(0)
    buffer.truncate()
    pickler.clear_memo()
    try:
        pickler.dump(obj)
    except _NotPlain:
        del _plain.pair  # a dump cut short: start the next from a fresh pickler
        data: bytes = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        return data
    except BaseException:
        del _plain.pair
        raise
    if buffer.tell() > LARGE_PICKLE:
        # not reused: refilling a buffer past the allocator's mmap threshold costs ~0.5 ms per MiB, against ~30 us
        # for a fresh one (so a stream of large values pays that once)
        del _plain.pair
    return buffer.getvalue()


def loads(data: bytes | memoryview) -> Any:
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise DeserializationError(f"Could not deserialize a payload: {type(exc).__name__}: {exc}") from exc


def serialize_args(args: tuple[Any, ...], kwargs: dict[str, Any], function_name: str) -> bytes:
    """Pickle a call's arguments, naming the offending argument when one cannot be pickled."""
    try:
        return dumps((args, kwargs))
    except Exception:
        pass
    for position, value in enumerate(args):
        _check_picklable(value, f"positional argument {position}", function_name)
    for key, value in kwargs.items():
        _check_picklable(value, f"keyword argument {key!r}", function_name)
    raise SerializationError(f"The arguments of {function_name} could not be serialized with cloudpickle.")


def _check_picklable(value: Any, where: str, function_name: str) -> None:
    try:
        cloudpickle.dump(value, io.BytesIO())
    except Exception as exc:
        raise SerializationError(
            f"Cannot send {where} of {function_name} ({type(value).__name__}) to a container: it cannot be "
            f"pickled ({type(exc).__name__}: {exc}). Pass plain data (paths, ids, bytes) and create "
            "such objects inside the function."
        ) from exc


_shown_paths: dict[str, str] = {}  # a folder code runs from -> the folder people know it as (the client's)


def show_paths_as(folder: str, shown: str) -> None:
    """Name files under ``folder`` (an unpacked code bundle) as under ``shown`` in tracebacks from now on."""
    _shown_paths[folder.rstrip(os.sep) + os.sep] = shown.rstrip(os.sep) + os.sep


def _user_paths(tb_text: str) -> str:
    for folder, shown in _shown_paths.items():
        tb_text = tb_text.replace(f'File "{folder}', f'File "{shown}')
    return tb_text


def serialize_failure(exc: BaseException, redact: Any = None) -> bytes:
    """Pack an exception raised by user code: the exception itself when picklable, always its traceback text.

    ``redact`` (text -> text) hides secret values: an exception that mentions one travels as text only.
    """
    tb_text = _user_paths("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    if redact is not None:
        clean_tb, clean_repr = redact(tb_text), redact(repr(exc))
        if clean_tb != tb_text or clean_repr != repr(exc):
            return dumps({"exc": None, "type": type(exc).__name__, "repr": clean_repr, "traceback": clean_tb})
    try:
        pickled: bytes | None = dumps(exc)
        pickle.loads(pickled or b"")  # an exception that pickles but cannot be rebuilt is as good as unpicklable
    except Exception:
        pickled = None
    return dumps({"exc": pickled, "type": type(exc).__name__, "repr": repr(exc), "traceback": tb_text})


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
MAX_FAILURE_TEXT = 20_000  # characters of a traceback kept for people; the caller's exception is whole


def describe_failure(exc: BaseException, redact: Any = None) -> tuple[str, str, str]:
    """(type, message, traceback) of an exception as text, for people (secrets redacted by ``redact``)."""
    kind = type(exc).__qualname__
    module = type(exc).__module__
    if module not in ("builtins", "__main__"):
        kind = f"{module}.{kind}"
    tb = exc.__traceback__  # from the user's first frame: the container's own frames say nothing to people
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    tb_text = _user_paths("".join(traceback.format_exception(type(exc), exc, tb)))
    message = str(exc)
    if redact is not None:
        tb_text, message = redact(tb_text), redact(message)
    if len(tb_text) > MAX_FAILURE_TEXT:
        tb_text = "...\n" + tb_text[-MAX_FAILURE_TEXT:]
    return kind, message[:2000], tb_text


def rebuild_failure(data: bytes) -> BaseException:
    """Turn a failure payload back into the exception the caller should see."""
    record = loads(data)
    exc: BaseException | None = None
    if record.get("exc") is not None:
        try:
            exc = pickle.loads(record["exc"] or b"")
        except Exception:
            exc = None
    if exc is None:
        detail = record["repr"]
        if record.get("traceback"):
            detail = f"{detail}\n\nRemote traceback:\n{record['traceback']}"
        exc = ExecutionError(detail)
    if record.get("traceback"):
        exc.__cause__ = RemoteTraceback(record["traceback"])
    return exc
