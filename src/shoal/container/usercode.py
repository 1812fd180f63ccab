"""The user's code inside a container: a function, or an instance of an ``@app.cls`` class with its hooks."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any

from .. import serialization
from ..protocol.specs import FunctionSpec
from .loader import load_function

PLAIN_TYPES = frozenset({int, float, str, bytes, bool, type(None), list, tuple, dict})  # never awaitable or generators


class UserCode:
    """Loads the target once, runs enter/exit hooks, and invokes it for an input's arguments."""

    def __init__(self, spec: FunctionSpec, pickled: bytes | None, fetch: Callable[[str], bytes]) -> None:
        self.is_class = spec.kind == "class"
        loaded = load_function(spec, pickled, fetch)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self.enter_hooks: list[Callable[[], Any]] = []
        self.exit_hooks: list[Callable[[], Any]] = []
        if self.is_class:
            from ..cls import class_hooks, construct

            user_cls: type = getattr(loaded, "user_cls", None) or loaded  # type: ignore[assignment]
            params = serialization.loads(fetch(spec.params_blob)) if spec.params_blob else {}
            self.instance = construct(user_cls, params)
            self.enter_hooks = [getattr(self.instance, n) for n in class_hooks(user_cls, "_shoal_enter")]
            self.exit_hooks = [getattr(self.instance, n) for n in class_hooks(user_cls, "_shoal_exit")]
        else:
            self.fn = loaded

    def target(self, args: tuple[Any, ...]) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """The callable an input's arguments address, and the arguments left for it."""
        if not self.is_class:
            return self.fn, args
        return getattr(self.instance, args[0]), args[1:]

    def is_async(self, args: tuple[Any, ...]) -> bool:
        return inspect.iscoroutinefunction(self.target(args)[0])

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """An event loop (in its own thread) for async user code."""
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="shoal-user-loop", daemon=True).start()
            return self._loop

    def resolve(self, value: Any, on_future: Callable[[Any], None] | None = None) -> Any:
        """Wait for ``value`` if user code returned an awaitable (``on_future`` gets the future, to cancel it)."""
        if type(value) in PLAIN_TYPES or not inspect.isawaitable(value):
            return value
        future = asyncio.run_coroutine_threadsafe(_await(value), self.loop)
        if on_future is not None:
            on_future(future)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. InputCancellation raised in this thread: the coroutine sees CancelledError
            raise

    def call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], on_future: Callable[[Any], None] | None = None
    ) -> Any:
        f, rest = self.target(args)
        return self.resolve(f(*rest, **kwargs), on_future)

    def enter(self) -> None:
        for hook in self.enter_hooks:
            self.resolve(hook())

    def exit(self) -> None:
        for hook in self.exit_hooks:
            self.resolve(hook())


async def _await(value: Any) -> Any:
    return await value
