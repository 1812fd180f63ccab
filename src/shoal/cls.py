"""``@app.cls``: stateful classes. One container pool per (class, options, parameter values); ``@enter`` hooks
run once per container, ``@exit`` hooks when it stops; ``@method``s are called like functions.

    @app.cls(max_containers=2)
    class Model:
        size: str = shoal.parameter(default="small")

        @shoal.enter()
        def load(self): self.weights = load_weights(self.size)

        @shoal.method()
        def predict(self, x): ...

    Model(size="large").predict.map(xs)
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from typing import Any

from msgspec import structs

from . import _context
from .client import Client, client_for
from .exception import InvalidError
from .functions import (
    Function,
    FunctionOptions,
    batch_config,
    checked_overrides,
    concurrency_config,
    register_variant,
)
from .partial import PARAMETER_TYPES, BatchConfig, ConcurrencyConfig, _Parameter, has_default
from .protocol import routes
from .serialization import dumps


def class_parameters(user_cls: type) -> dict[str, _Parameter]:
    return {k: v for k, v in vars(user_cls).items() if isinstance(v, _Parameter)}


def class_methods(user_cls: type) -> dict[str, Any]:
    """The methods callable remotely: ``@method()``s, and a ``@batched`` method (Modal needs no ``@method`` on it)."""
    return {
        k: v for k, v in inspect.getmembers(user_cls)
        if getattr(v, "_shoal_method", False) or hasattr(v, "_shoal_batched")
    }  # fmt: skip


def class_hooks(user_cls: type, mark: str) -> list[str]:
    """Names of methods carrying ``mark``, in definition order (base classes first)."""
    names: list[str] = []
    for klass in reversed(user_cls.__mro__):
        for name, value in vars(klass).items():
            if getattr(value, mark, False) and name not in names:
                names.append(name)
    return names


def class_options(user_cls: type, options: FunctionOptions) -> FunctionOptions:
    """Fold the class's @concurrent and its (single) @batched method into the options."""
    batched = {k: v._shoal_batched for k, v in class_methods(user_cls).items() if hasattr(v, "_shoal_batched")}
    if batched and len(class_methods(user_cls)) > 1:
        raise InvalidError(f"{user_cls.__name__}: a class with a @batched method cannot have other @method()s.")
    batch: BatchConfig | None = next(iter(batched.values()), None)
    concurrency: ConcurrencyConfig | None = getattr(user_cls, "_shoal_concurrency", None)
    if batch and concurrency:
        raise InvalidError(f"{user_cls.__name__}: @batched and @concurrent cannot be combined.")
    return structs.replace(options, batch=batch or options.batch, concurrency=concurrency or options.concurrency)


class Cls:
    """What ``@app.cls`` returns. Call it with parameter values to get an instance handle."""

    def __init__(self, user_cls: type | None, service: Function, overrides: dict[str, Any] | None = None) -> None:
        self.user_cls = user_cls
        self._service = service  # the registered class service (one function on the server)
        self._overrides = overrides or {}
        self._variant: Function | None = None
        self._web_endpoints: dict[str, Function] = {}  # web method -> its endpoint function
        self.__name__ = service.tag
        self.__doc__ = getattr(user_cls, "__doc__", None)

    def __repr__(self) -> str:
        return f"Cls({self._service.tag!r})"

    def __call__(self, **params: Any) -> Obj:
        return Obj(self, self._check_params(params))

    def _check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.user_cls is None:  # looked up by name: the server-side class validates
            return params
        declared = class_parameters(self.user_cls)
        unknown = set(params) - set(declared)
        if unknown:
            raise InvalidError(
                f"{self.__name__} got unknown parameters {sorted(unknown)}; declared: {sorted(declared) or 'none'}"
            )
        values = {}
        for name, p in declared.items():
            if name in params:
                value = params[name]
            elif has_default(p):
                value = p.default
            else:
                raise InvalidError(f"{self.__name__} needs a value for parameter {name!r}.")
            if not isinstance(value, PARAMETER_TYPES):
                raise InvalidError(f"parameter {name!r} must be str, int, bool or bytes, not {type(value).__name__}")
            values[name] = value
        return values

    @classmethod
    def from_name(cls, app_name: str, name: str) -> Cls:
        """A deployed class, looked up lazily on the standing server on first use."""
        return cls(None, Function.from_name(app_name, name))

    def with_options(self, **options: Any) -> Cls:
        """A variant with other options (``cpu``, ``max_containers``, ``timeout``, ``retries``, ...): its own pool."""
        return Cls(self.user_cls, self._service, {**self._overrides, **checked_overrides(options, self._service.tag)})

    def with_concurrency(self, *, max_inputs: int, target_inputs: int | None = None) -> Cls:
        return self.with_options(concurrency=concurrency_config(max_inputs, target_inputs))

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> Cls:
        return self.with_options(batch=batch_config(max_batch_size, wait_ms))

    async def _function(self) -> tuple[Client, str]:
        """(client, function id) of this class (or variant) on the server, registering a variant on first use."""
        client, service_id = await self._service._resolve()
        if not self._overrides:
            return client, service_id
        if self._variant is None or self._variant.object_id is None:
            self._variant = await register_variant(client, self._service, self._overrides, "a class")
        assert self._variant.object_id is not None
        return client, self._variant.object_id


class Obj:
    """An instance handle: ``Model(size="large")``. Its methods are called like functions."""

    def __init__(self, cls: Cls, params: dict[str, Any]) -> None:
        self._cls = cls
        self._params = params
        self._bound_id: str | None = None
        self._local: Any = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{self._cls.__name__}({args})"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        user_cls = self._cls.user_cls
        if user_cls is not None and name not in class_methods(user_cls) and name not in self._cls._web_endpoints:
            raise AttributeError(f"{self._cls.__name__} has no @method() {name!r}")
        return MethodFunction(self, name)

    async def _resolve(self) -> tuple[Client, str]:
        client, function_id = await self._cls._function()
        if not self._params:
            return client, function_id
        if self._bound_id is None:
            data = dumps(self._params)
            blob_id = hashlib.sha256(data).hexdigest()
            if not await client.has_blob(blob_id):
                await client.put_blob(blob_id, data)
            resp = await client.request(
                "POST", routes.path(routes.FUNCTION_BIND, function_id=function_id), {"params_blob": blob_id}
            )
            self._bound_id = resp["function_id"]
        return client, self._bound_id

    def _local_instance(self) -> Any:
        """The instance ``.local()`` calls run on, with its enter hooks run once."""
        if self._local is None:
            user_cls = self._cls.user_cls
            if user_cls is None:
                raise InvalidError(f"{self._cls.__name__} was looked up by name: its code is not in this process")
            self._local = construct(user_cls, self._params)
            for hook in class_hooks(user_cls, "_shoal_enter"):
                result = getattr(self._local, hook)()
                if inspect.isawaitable(result):
                    asyncio.run(result)  # type: ignore[arg-type]
        return self._local


def construct(user_cls: type, params: dict[str, Any]) -> Any:
    """Build an instance the way a container does: parameters set as attributes, no custom __init__ args."""
    instance: Any = object.__new__(user_cls)
    for name, p in class_parameters(user_cls).items():
        setattr(instance, name, params.get(name, p.default))
    init = vars(user_cls).get("__init__")
    if init is not None:
        init(instance)
    return instance


class MethodFunction(Function):
    """``obj.method``: every Function invocation (``remote``, ``map``, ``spawn``... and ``.aio``) on one method."""

    def __init__(self, obj: Obj, method: str) -> None:
        service = obj._cls._service
        raw = getattr(obj._cls.user_cls, method, None) if obj._cls.user_cls is not None else None
        super().__init__(raw, f"{service.tag}.{method}", service.options, service.app_name)
        self._obj = obj
        self._method = method

    def _call_args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (self._method, *args)

    def get_web_url(self) -> str | None:
        """A web method's URL (each web method of a class is an endpoint of its own)."""
        endpoint = self._obj._cls._web_endpoints.get(self._method)
        return endpoint.get_web_url() if endpoint is not None else None

    async def _resolve(self) -> tuple[Client, str]:
        if not _context.is_local() and self._obj._cls._service.object_id is None:
            await self._obj._cls._service._resolve()
        client, function_id = await self._obj._resolve()
        self._url = client.url
        return client_for(client.url), function_id

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run the method in this process, on an instance whose enter hooks ran here once."""
        return getattr(self._obj._local_instance(), self._method)(*args, **kwargs)
