"""Descriptors that turn one ``async def`` core into a blocking method with an ``.aio`` twin."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Generic, TypeVar

from ._sync import iter_aio, iter_sync, run_aio, run_sync

T = TypeVar("T")


Now = Callable[..., "tuple[Any] | None"]  # an answer at hand, in a 1-tuple; None: ask the core


class _BoundCall:
    def __init__(self, core: Callable[..., Coroutine[Any, Any, Any]], obj: Any, now: Now | None = None) -> None:
        self._core = core
        self._obj = obj
        self._now = now
        functools.update_wrapper(self, core)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._now is not None and (answer := self._now(self._obj, *args, **kwargs)) is not None:
            return answer[0]  # known already: no hop to the SDK's loop thread and back
        return run_sync(self._core(self._obj, *args, **kwargs))

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        return await run_aio(self._core(self._obj, *args, **kwargs))


class ResultIterator:
    """The iterator a ``map`` returns; ``function_call_id`` names the call once the first result was asked for.

    Keep that id to re-attach to the map from another process (``FunctionCall.from_id(id).iter()``). The blocking
    face is a plain iterator only (not async-iterable), as Modal's is: code that takes either kind, such as
    Starlette's ``StreamingResponse``, iterates it the blocking way (in a thread), not as an async iterator.
    """

    def __init__(self, start: Callable[[ResultIterator], AsyncIterator[list[Any]]]) -> None:
        self.function_call_id: str | None = None
        self._it: Any = self._iterate(start(self))

    @staticmethod
    def _iterate(agen: AsyncIterator[list[Any]]) -> Any:
        return iter_sync(agen)

    def _set_call_id(self, call_id: str) -> None:
        self.function_call_id = call_id

    def __iter__(self) -> ResultIterator:
        return self

    def __next__(self) -> Any:
        return next(self._it)

    def close(self) -> None:
        self._it.close()


class AsyncResultIterator(ResultIterator):
    """The async iterator ``map.aio`` returns (``async for``); ``function_call_id`` as for :class:`ResultIterator`."""

    @staticmethod
    def _iterate(agen: AsyncIterator[list[Any]]) -> Any:
        return iter_aio(agen)

    def __iter__(self) -> ResultIterator:
        raise TypeError("map.aio(...) gives an async iterator: use `async for`, or call map(...) without .aio")

    def __next__(self) -> Any:
        raise TypeError("map.aio(...) gives an async iterator: use `async for`, or call map(...) without .aio")

    def __aiter__(self) -> AsyncResultIterator:
        return self

    async def __anext__(self) -> Any:
        return await self._it.__anext__()

    async def aclose(self) -> None:
        await self._it.aclose()


class _BoundGen:
    def __init__(self, core: Callable[..., AsyncIterator[list[Any]]], obj: Any) -> None:
        self._core = core
        self._obj = obj
        self._tracks_call = "_on_call" in inspect.signature(core).parameters
        functools.update_wrapper(self, core)

    def _start(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Callable[[ResultIterator], AsyncIterator[list[Any]]]:
        def start(handle: ResultIterator) -> AsyncIterator[list[Any]]:
            extra = {"_on_call": handle._set_call_id} if self._tracks_call else {}
            return self._core(self._obj, *args, **kwargs, **extra)

        return start

    def __call__(self, *args: Any, **kwargs: Any) -> ResultIterator:
        return ResultIterator(self._start(args, kwargs))

    def aio(self, *args: Any, **kwargs: Any) -> AsyncResultIterator:
        return AsyncResultIterator(self._start(args, kwargs))


class aio_method(Generic[T]):  # noqa: N801 - used as a decorator
    """``obj.m(...)`` runs the core and blocks; ``await obj.m.aio(...)`` runs it from async code."""

    def __init__(self, core: Callable[..., Coroutine[Any, Any, T]], now: Now | None = None) -> None:
        self.core = core
        self.now = now
        functools.update_wrapper(self, core)  # type: ignore[arg-type]

    @classmethod
    def answering(cls, now: Now) -> Callable[[Callable[..., Coroutine[Any, Any, T]]], aio_method[T]]:
        """Like ``@aio_method``, with ``now(obj, *args, **kwargs)`` asked first by the blocking face: an answer it
        has at hand (in a 1-tuple) is returned as it is, in the caller's thread."""
        return lambda core: cls(core, now)

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return _BoundCall(self.core, obj, self.now)


class aio_gen_method:  # noqa: N801 - used as a decorator
    """For cores that are async generators of result batches: a blocking iterator and an async one."""

    def __init__(self, core: Callable[..., AsyncIterator[list[Any]]]) -> None:
        self.core = core
        functools.update_wrapper(self, core)  # type: ignore[arg-type]

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return _BoundGen(self.core, obj)
