"""``Function``: what ``@app.function`` returns, and every way to invoke it."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import structs

from . import _context
from ._aio import aio_gen_method, aio_method
from ._map import abandon_call, known_length, run_map, spawn_map, star_items, zip_items
from ._payloads import check_size, to_payload
from .calls import MAX_WAIT, FunctionCall, output_value, stream_items, wait_result
from .client import Client, client_for
from .exception import ExecutionError, InvalidError, NotFoundError, SerializationError
from .logs import LogsManager, Target
from .partial import BatchConfig, ConcurrencyConfig, WebConfig
from .protocol import routes
from .protocol.specs import FunctionSpec, Resources, decode_spec
from .retries import RetryPolicy
from .serialization import dumps, serialize_args

CallArgs = tuple[tuple[Any, ...], dict[str, Any]]


class FunctionOptions(msgspec.Struct, frozen=True):
    """The settings of one function, as validated by ``@app.function``."""

    timeout: float = 300.0
    startup_timeout: float | None = None
    retries: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    max_containers: int | None = None
    min_containers: int = 0
    buffer_containers: int = 0
    scaledown_window: float = 60.0
    cpu: float | None = None
    memory: int | None = None
    memory_limit: int | None = None  # MiB; enforced (RLIMIT_AS) when given as memory=(request, limit)
    gpu: str | None = None
    env: dict[str, str | None] = msgspec.field(default_factory=dict)
    serialized: bool = False
    single_use_containers: bool = False
    image: Any = None
    secrets: tuple[Any, ...] = ()
    volumes: tuple[tuple[str, Any], ...] = ()  # (mount path, Volume)
    batch: BatchConfig | None = None
    concurrency: ConcurrencyConfig | None = None
    schedule: dict[str, Any] | None = None  # a Period/Cron spec: the control plane fires it
    web: WebConfig | None = None  # fastapi_endpoint, asgi_app, wsgi_app, web_server

    def spec(self, default_max_containers: int) -> FunctionSpec:
        """The scheduling and resource part of the function's spec (the App adds code, image, secrets, volumes)."""
        return FunctionSpec(
            timeout=self.timeout, startup_timeout=self.startup_timeout or max(self.timeout, 60.0),
            retries=self.retries, max_containers=self.max_containers or default_max_containers,
            min_containers=self.min_containers, buffer_containers=self.buffer_containers,
            scaledown_window=self.scaledown_window, single_use_containers=self.single_use_containers,
            batch=self.batch, concurrency=self.concurrency, schedule=self.schedule, env=self.env, web=self.web,
            resources=Resources(cpu=self.cpu, memory=self.memory, memory_limit=self.memory_limit, gpu=self.gpu),
        )  # fmt: skip


@dataclass(frozen=True)
class FunctionStats:
    """What ``Function.get_current_stats()`` returns (Modal's names, plus ``running_inputs``)."""

    backlog: int
    num_total_runners: int
    running_inputs: int = 0


class Function:
    """A function registered on an App. Call ``.remote()``, ``.map()``, ``.spawn()``... inside ``app.run()``.

    Every invoking method has an ``.aio`` variant for async code (``await f.remote.aio(x)``,
    ``async for r in f.map.aio(xs)``).
    """

    def __init__(
        self, raw_f: Callable[..., Any] | None, tag: str, options: FunctionOptions, app_name: str | None
    ) -> None:
        self.raw_f = raw_f
        self.tag = tag
        self.options = options
        self.app_name = app_name
        self._object_id: str | None = None
        self._url: str | None = None
        self._client: Client | None = None  # the server's client, found once per hydration (not once per call)
        self._web_url: str | None = None  # a web endpoint's URL, once registered (or looked up)
        self._web_method: str | None = None  # a web endpoint on a method of an @app.cls class: that method
        self.__doc__ = getattr(raw_f, "__doc__", None)
        self.__name__ = getattr(raw_f, "__name__", tag)
        self.__qualname__ = getattr(raw_f, "__qualname__", tag)
        self.__module__ = getattr(raw_f, "__module__", None)  # type: ignore[assignment]
        self.is_generator = inspect.isgeneratorfunction(raw_f) or inspect.isasyncgenfunction(raw_f)
        self._deployed_app: str | None = None  # set by from_name: resolved lazily on the standing server
        self._deployed_version: int | None = None  # from_name(version=): pinned to that app version
        self._spec: FunctionSpec | None = None  # as registered (code location included), for variants
        self._app_id: str | None = None

    def __repr__(self) -> str:
        return f"Function({self.tag!r}{', ' + self._object_id if self._object_id else ''})"

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (e.g. captured by a serialized function): travel as a reference, resolved by tag in the container.
        return {"raw_f": None, "tag": self.tag, "options": self.options, "app_name": self.app_name,
                "_object_id": self._object_id, "_url": None, "is_generator": self.is_generator,
                "_web_url": self._web_url, "_deployed_app": self._deployed_app,
                "_deployed_version": self._deployed_version,
                "_spec": None, "_app_id": None}  # fmt: skip

    @classmethod
    def from_name(
        cls, app_name: str, name: str, *, version: int | None = None, environment_name: str | None = None
    ) -> Function:
        """A deployed function (``shoal deploy``), looked up lazily on the standing server on first use.

        ``version`` pins the function as deployed at that app version (``shoal app history`` lists them); Shoal
        has one environment, so ``environment_name`` is accepted and ignored.

        Raises:
            NotFoundError: (on first use) no such app, version or function; the message lists what exists.
        """
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise InvalidError(f"version={version!r}: an app version is a whole number from 1")
        fn = cls(None, name, FunctionOptions(), app_name)
        fn._deployed_app = app_name
        fn._deployed_version = version
        return fn

    @property
    def object_id(self) -> str | None:
        """The function's id on the server while its app runs (``fu-...``)."""
        return self._object_id

    @property
    def logs(self) -> LogsManager:
        """The log lines of this function's containers (Modal 1.5): ``logs.fetch(since=...)``, ``logs.tail(n)``,
        ``logs.stream()``; each with ``.aio``. The function must be hydrated (its app runs, or ``from_name``)."""

        async def target() -> Target:
            client, function_id = await self._resolve()
            return client, {"function_id": function_id}, function_id

        return LogsManager(target)

    def _hydrate(self, object_id: str | None, url: str | None) -> None:
        self._object_id, self._url = object_id, url
        self._client = None

    def with_options(self, **options: Any) -> Function:
        """A variant of this function with other options (``cpu``, ``gpu``, ``max_containers``, ``timeout``,
        ``retries``, ...; Modal 1.4.3): the same code in a pool of containers of its own."""
        return FunctionVariant(self, checked_overrides(options, self.tag))

    def with_concurrency(self, *, max_inputs: int, target_inputs: int | None = None) -> Function:
        """A variant whose containers run up to ``max_inputs`` inputs at once (as ``@concurrent`` does)."""
        return self.with_options(concurrency=concurrency_config(max_inputs, target_inputs))

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> Function:
        """A variant that takes its inputs in batches (as ``@batched`` does)."""
        return self.with_options(batch=batch_config(max_batch_size, wait_ms))

    def get_web_url(self) -> str | None:
        """The URL of a web endpoint (``fastapi_endpoint``, ``asgi_app``, ...): set once the app runs or, for
        ``Function.from_name``, once looked up; None for other functions."""
        if self._web_url is None and self._deployed_app is not None:
            from ._sync import run_sync

            run_sync(self._resolve())
        return self._web_url

    def _generator(self) -> bool:
        """Whether it is a generator function: known from its code here, or from the spec a lookup returned."""
        return self.is_generator or (self._spec is not None and self._spec.is_generator)

    def _refuse_generator(self, how: str) -> None:
        """Modal's rule: a generator function is called with ``.remote_gen`` only."""
        if self._generator():
            raise InvalidError(
                f"{self.tag} is a generator function: it cannot be called with `.{how}(...)`. "
                "Use `.remote_gen(...)` instead."
            )

    async def _resolve_for(self, how: str) -> tuple[Client, str]:
        """``_resolve`` for a call of kind ``how``, refusing generator functions (known here or, for a handle from
        ``from_name``, from the spec the server sent)."""
        self._refuse_generator(how)
        resolved = await self._resolve()
        self._refuse_generator(how)
        return resolved

    async def _resolve(self) -> tuple[Client, str]:
        if self._object_id is None and self._deployed_app is not None:
            await self._resolve_deployed(self._deployed_app)
        if self._object_id is None and not _context.is_local():
            from .client import configured_url
            from .config import container_env

            url = await asyncio.to_thread(configured_url)
            env = container_env()
            assert url is not None and env is not None
            client = client_for(url)
            resp = await client.request("GET", routes.path(routes.APP_FUNCTION, ref=env.app_id, tag=self.tag))
            self._hydrate(resp["function_id"], url)
        if self._object_id is None or self._url is None:
            raise ExecutionError(
                f"Function {self.tag} is not running: call it inside `with app.run():` (or `shoal run`), "
                "or use .local() to run it in this process."
            )
        if self._client is None:
            self._client = client_for(self._url)
        return self._client, self._object_id

    async def _resolve_deployed(self, app_name: str) -> None:
        from .client import configured_url

        url = await asyncio.to_thread(configured_url)
        if url is None:
            raise NotFoundError(
                f"No Shoal server is running, so app {app_name!r} is not deployed: run `shoal deploy FILE.py` "
                "(it starts the server), or set SHOAL_SERVER_URL."
            )
        pin = f"?version={self._deployed_version}" if self._deployed_version is not None else ""
        resp = await client_for(url).request(
            "GET", routes.path(routes.APP_FUNCTION, ref=app_name, tag=self.tag) + f"{pin}"
        )
        self._hydrate(resp["function_id"], url)
        self._app_id, self._spec = resp["app_id"], decode_spec(resp["spec"])
        self._web_url = resp.get("web_url")

    # ---- invoking ---------------------------------------------------------------------------------

    def _call_args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The positional arguments as sent (a class method prepends its name)."""
        return args

    def _items(self, items: Iterator[CallArgs]) -> Iterator[CallArgs]:
        for args, kwargs in items:
            yield self._call_args(args), kwargs

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function in this process (no container)."""
        if self.raw_f is None:
            raise InvalidError(f"{self.tag} was looked up by name: its code is not in this process; use .remote().")
        return self.raw_f(*args, **kwargs)

    async def _submit_one(
        self, client: Client, function_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], kind: str,
        wait: float = 0.0, key: str | None = None,
    ) -> tuple[str, list[Any] | None]:  # fmt: skip
        """Submit one input; with ``wait``, the same request waits up to that long for its output; with ``key``,
        once per key (the call the key started, if any, is returned instead)."""
        data = serialize_args(self._call_args(args), kwargs, self.tag)
        check_size(data, self.tag)
        payload = await to_payload(client, data)
        body = {"kind": kind, "inputs": [payload], "close": True, "parent_input": _context.current_input_id()}
        if wait > 0:
            body["wait"] = wait
        if key is not None:
            body["key"] = key
        resp = await client.request(
            "POST", routes.path(routes.FUNCTION_CALLS, function_id=function_id), body, packed=True
        )
        return str(resp["call_id"]), resp.get("output")

    @aio_method
    async def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Run in a container and return the result (raising what the function raised)."""
        client, function_id = await self._resolve_for("remote")
        call_id, output = await self._submit_one(client, function_id, args, kwargs, "remote", wait=MAX_WAIT)
        if output is not None:  # it came back within the submitting request: one round trip
            return await output_value(client, output)
        return await wait_result(client, call_id, 0, None)

    @aio_method
    async def spawn(self, *args: Any, **kwargs: Any) -> FunctionCall:
        """Submit one input and return at once with a :class:`FunctionCall` (its id works from any process)."""
        client, function_id = await self._resolve_for("spawn")
        call_id, _ = await self._submit_one(client, function_id, args, kwargs, "spawn")
        return FunctionCall._spawned(call_id, client)

    @aio_method
    async def spawn_once(self, key: str, /, *args: Any, **kwargs: Any) -> FunctionCall:
        """:meth:`spawn`, once per ``key``: while the call a key started keeps its results, spawning with the same
        key (from any process: a kickoff endpoint its client retried) returns that call, and runs nothing.

        Beyond Modal. The key is per function of the app (a redeploy keeps it), at most 256 characters; it is
        free again once its call's results expire. :meth:`FunctionCall.from_key` finds the call.
        """
        _check_key(key)
        client, function_id = await self._resolve_for("spawn")
        call_id, _ = await self._submit_one(client, function_id, args, kwargs, "spawn", key=key)
        return FunctionCall._spawned(call_id, client)

    @aio_gen_method
    async def map(
        self, *input_iterators: Iterable[Any], kwargs: dict[str, Any] | None = None, order_outputs: bool = True,
        return_exceptions: bool = False, wrap_returned_exceptions: bool = True, _on_call: Any = None,
    ) -> AsyncIterator[list[Any]]:  # fmt: skip
        """Run over the zipped iterables in parallel, yielding results as they come (in input order by default).

        The iterables are read lazily with a bounded window, so they may be huge or infinite (zip stops at the
        shortest). ``return_exceptions=True`` yields failed inputs' exceptions in place instead of raising.
        """
        client, function_id = await self._resolve_for("map")
        items = self._items(zip_items(input_iterators, dict(kwargs or {})))
        async for batch in run_map(
            client, function_id, self.tag, items, order_outputs=order_outputs, return_exceptions=return_exceptions,
            parent_input=_context.current_input_id(), on_call=_on_call or (lambda _: None),
            detached=_context.is_detached(self._app_id), expected=known_length(*input_iterators),
        ):  # fmt: skip
            yield batch

    @aio_gen_method
    async def starmap(
        self, input_iterator: Iterable[Iterable[Any]], *, kwargs: dict[str, Any] | None = None,
        order_outputs: bool = True, return_exceptions: bool = False, wrap_returned_exceptions: bool = True,
        _on_call: Any = None,
    ) -> AsyncIterator[list[Any]]:  # fmt: skip
        """Like :meth:`map`, but each item of ``input_iterator`` is unpacked as the positional arguments."""
        client, function_id = await self._resolve_for("starmap")
        async for batch in run_map(
            client, function_id, self.tag, self._items(star_items(input_iterator, dict(kwargs or {}))),
            order_outputs=order_outputs, return_exceptions=return_exceptions, parent_input=_context.current_input_id(),
            on_call=_on_call or (lambda _: None), detached=_context.is_detached(self._app_id),
            expected=known_length(input_iterator),
        ):  # fmt: skip
            yield batch

    @aio_method
    async def for_each(
        self, *input_iterators: Iterable[Any], kwargs: dict[str, Any] | None = None, ignore_exceptions: bool = False
    ) -> None:
        """Run over the zipped iterables for side effects; raises the first failure unless ``ignore_exceptions``."""
        client, function_id = await self._resolve_for("for_each")
        async for _ in run_map(
            client, function_id, self.tag, self._items(zip_items(input_iterators, dict(kwargs or {}))),
            order_outputs=False,
            return_exceptions=ignore_exceptions, parent_input=_context.current_input_id(),
            detached=_context.is_detached(self._app_id), expected=known_length(*input_iterators),
        ):  # fmt: skip
            pass

    @aio_method
    async def spawn_map(self, *input_iterators: Iterable[Any], kwargs: dict[str, Any] | None = None) -> FunctionCall:
        """Submit every input and return a :class:`FunctionCall` without waiting.

        Beyond Modal: the handle's results can be fetched later, from any process (``.get(index=i)``,
        ``.iter()``, ``.num_inputs()``).
        """
        client, function_id = await self._resolve_for("spawn_map")
        items = self._items(zip_items(input_iterators, dict(kwargs or {})))
        call_id = await spawn_map(
            client,
            function_id,
            self.tag,
            items,
            _context.current_input_id(),
            _context.is_detached(self._app_id),
            expected=known_length(*input_iterators),
        )
        return FunctionCall(call_id, self._url)

    @aio_method
    async def spawn_map_once(
        self, key: str, /, *input_iterators: Iterable[Any], kwargs: dict[str, Any] | None = None
    ) -> FunctionCall:
        """:meth:`spawn_map`, once per ``key`` (see :meth:`spawn_once`): the same key returns the call it started,
        and submits nothing."""
        _check_key(key)
        client, function_id = await self._resolve_for("spawn_map")
        items = self._items(zip_items(input_iterators, dict(kwargs or {})))
        call_id = await spawn_map(client, function_id, self.tag, items, _context.current_input_id(),
                                  _context.is_detached(self._app_id), key=key,
                                  expected=known_length(*input_iterators))  # fmt: skip
        return FunctionCall(call_id, self._url)

    @aio_gen_method
    async def remote_gen(self, *args: Any, **kwargs: Any) -> AsyncIterator[list[Any]]:
        """Run a generator function in a container, yielding its items as they are produced.

        An exception raised by the generator comes after the items before it; leaving the loop early cancels the
        generator in its container.

        Raises:
            InvalidError: the function is not a generator function (use ``.remote``).
        """
        client, function_id = await self._resolve()
        if not self._generator():
            raise InvalidError(f"{self.tag} is not a generator function: call it with `.remote(...)`.")
        call_id, _ = await self._submit_one(client, function_id, args, kwargs, "generator")
        finished = False
        try:
            async for batch in stream_items(client, call_id):
                yield batch
            finished = True
        finally:
            if not finished:  # leaving the loop early stops the generator in its container
                await abandon_call(client, call_id, detached=False, submitted_all=True)

    @aio_method
    async def get_current_stats(self) -> FunctionStats:
        """Live counts of the function: its backlog (inputs waiting), running inputs and containers."""
        client, function_id = await self._resolve()
        return FunctionStats(**await client.request("GET", routes.path(routes.FUNCTION_STATS, function_id=function_id)))

    @aio_method
    async def update_autoscaler(
        self, *, min_containers: int | None = None, max_containers: int | None = None,
        buffer_containers: int | None = None, scaledown_window: float | None = None,
    ) -> None:  # fmt: skip
        """Change the running (or deployed) function's autoscaling in place; the scheduler applies it at once.

        Raises:
            InvalidError: a negative value, ``max_containers=0``, or ``min_containers`` above ``max_containers``.
        """
        client, function_id = await self._resolve()
        changes = {"min_containers": min_containers, "max_containers": max_containers,
                   "buffer_containers": buffer_containers, "scaledown_window": scaledown_window}  # fmt: skip
        await client.request(
            "POST",
            routes.path(routes.FUNCTION_AUTOSCALER, function_id=function_id),
            {k: v for k, v in changes.items() if v is not None},
        )

    def get_raw_f(self) -> Callable[..., Any]:
        if self.raw_f is None:
            raise InvalidError(f"{self.tag} was looked up by name: its code is not in this process.")
        return self.raw_f

    def pickled(self) -> bytes:
        """The function as ``serialized=True`` sends it.

        Raises:
            SerializationError: it cannot be pickled (what it holds, and how to do without).
        """
        try:
            return dumps(self.raw_f)
        except Exception as exc:  # noqa: BLE001 - any pickling failure gets the same advice
            raise SerializationError(
                f"{self.tag} (serialized=True) cannot be pickled: {type(exc).__name__}: {exc}. It holds, or refers to "
                "a global that holds, something that does not travel (a lock, an open file or connection, a "
                "client). Create that object inside the function (or in an @enter method), or drop serialized=True "
                "so that the container imports the function from its module."
            ) from None


MAX_KEY = 256  # characters of a call's key (the server's limit too)


class FunctionVariant(Function):
    """What ``f.with_options(...)`` returns: ``f``'s code with other options, registered on first use under a tag
    of its own (``f~<hash of the options>``, shown as ``f (with_options ...)``), with its own containers."""

    def __init__(self, base: Function, overrides: dict[str, Any]) -> None:
        if isinstance(base, FunctionVariant):  # a variant of a variant: one variant with both sets of options
            overrides = {**base._overrides, **overrides}
            base = base._base
        super().__init__(base.raw_f, base.tag, structs.replace(base.options, **overrides), base.app_name)
        self._base: Function = base
        self._overrides: dict[str, Any] = overrides

    def with_options(self, **options: Any) -> Function:
        return FunctionVariant(self, checked_overrides(options, self.tag))

    async def _resolve(self) -> tuple[Client, str]:
        if self._object_id is None:
            client, _ = await self._base._resolve()
            if self._base.options.serialized:
                raise InvalidError(f"{self.tag}: with_options() of a serialized=True function is not supported yet")
            variant = await register_variant(client, self._base, self._overrides, "a function")
            self._hydrate(variant._object_id, variant._url)
            self._app_id = self._base._app_id
        return await super()._resolve()


def concurrency_config(max_inputs: int, target_inputs: int | None) -> ConcurrencyConfig:
    """``with_concurrency``'s arguments, checked as ``@concurrent`` checks them."""
    from .partial import concurrent

    concurrent(max_inputs=max_inputs, target_inputs=target_inputs)  # validates
    return ConcurrencyConfig(max_inputs, max_inputs if target_inputs is None else target_inputs)


def batch_config(max_batch_size: int, wait_ms: int) -> BatchConfig:
    """``with_batching``'s arguments, checked as ``@batched`` checks them."""
    from .partial import batched

    batched(max_batch_size=max_batch_size, wait_ms=wait_ms)  # validates
    return BatchConfig(max_batch_size, wait_ms)


def checked_overrides(options: dict[str, Any], tag: str) -> dict[str, Any]:
    """``with_options`` arguments, checked as ``@app.function`` checks them (``retries`` parsed)."""
    allowed = {f.name for f in structs.fields(FunctionOptions)} - {"serialized", "image"}
    bad = set(options) - allowed
    if bad:
        raise InvalidError(f"with_options got unsupported options {sorted(bad)}")
    options = dict(options)
    if "retries" in options:
        from .retries import parse_retries

        options["retries"] = parse_retries(options["retries"])
    if isinstance(options.get("memory"), tuple):  # (request, limit), as @app.function takes it
        options["memory"], options["memory_limit"] = options["memory"]
    if isinstance(options.get("cpu"), tuple):
        options["cpu"] = options["cpu"][0]
    if isinstance(options.get("gpu"), list):
        options["gpu"] = ",".join(options["gpu"])
    if options.get("gpu"):
        from .backends.resources import parse_gpu

        parse_gpu(options["gpu"])
        from .app import warn_if_no_gpu

        warn_if_no_gpu(tag, options["gpu"])  # as gpu= on @app.function does
    return options


async def register_variant(client: Client, service: Function, overrides: dict[str, Any], what: str) -> Function:
    """Register a ``with_options`` variant of a function or class on its app: its own tag and pool."""
    spec = service._spec
    if spec is None:
        raise InvalidError(f"with_options() variants of {what} looked up by name are not supported yet")
    options = structs.replace(service.options, **overrides)
    variant_spec = spec.with_options(options.spec(spec.max_containers))
    key = hashlib.sha256(repr(sorted(overrides.items())).encode()).hexdigest()[:12]
    tag = f"{service.tag}~{key}"
    resp = await client.request(
        "POST", routes.path(routes.APP_FUNCTIONS, ref=app_of(service)),
        {"tag": tag, "spec": variant_spec.to_wire(), "pickled": None}, packed=True,
    )  # fmt: skip
    variant = Function(None, tag, options, service.app_name)
    variant._hydrate(resp["function_id"], service._url)
    return variant


def app_of(fn: Function) -> str:
    """The id of the app a function runs in (in a container: the container's app)."""
    from .config import container_env

    container = container_env()
    app_id = container.app_id if container is not None else fn._app_id
    if app_id is None:
        raise InvalidError(f"{fn.tag} is not running: use it inside `with app.run():`")
    return str(app_id)


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
        raise InvalidError(f"A call's key is a string of 1 to {MAX_KEY} characters, not {key!r}.")
