"""Descriptors that turn one ``async def`` core into a blocking method with an ``.aio`` twin."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Generic, TypeVar

from ._sync import iter_aio, iter_sync, run_aio, run_sync

T = TypeVar("T")


class _BoundCall:
    def __init__(self, core: Callable[..., Coroutine[Any, Any, Any]], obj: Any) -> None:
        self._core = core
        self._obj = obj
        functools.update_wrapper(self, core)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return run_sync(self._core(self._obj, *args, **kwargs))

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        return await run_aio(self._core(self._obj, *args, **kwargs))


class _BoundGen:
    def __init__(self, core: Callable[..., AsyncIterator[list[Any]]], obj: Any) -> None:
        self._core = core
        self._obj = obj
        functools.update_wrapper(self, core)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return iter_sync(self._core(self._obj, *args, **kwargs))

    def aio(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        return iter_aio(self._core(self._obj, *args, **kwargs))


class aio_method(Generic[T]):  # noqa: N801 - used as a decorator
    """``obj.m(...)`` runs the core and blocks; ``await obj.m.aio(...)`` runs it from async code."""

    def __init__(self, core: Callable[..., Coroutine[Any, Any, T]]) -> None:
        self.core = core
        functools.update_wrapper(self, core)  # type: ignore[arg-type]

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return _BoundCall(self.core, obj)


class aio_gen_method:  # noqa: N801 - used as a decorator
    """For cores that are async generators of result batches: a blocking iterator and an async one."""

    def __init__(self, core: Callable[..., AsyncIterator[list[Any]]]) -> None:
        self.core = core
        functools.update_wrapper(self, core)  # type: ignore[arg-type]

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return _BoundGen(self.core, obj)
