"""Typed specs: what a function is, as the SDK registers it and the server, store, backends and containers read it.

One declaration per option. The SDK builds a :class:`FunctionSpec` from ``@app.function`` options (validated for
the user there, with Modal's messages); the server decodes it with :func:`decode_spec`, which rejects anything
malformed (a wrong type, a negative number, an unknown field) before it is stored. The wire form is the struct's
plain-data form (JSON in the store, msgpack on the wire), tagged with :data:`SPEC_VERSION`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..partial import BatchConfig, ConcurrencyConfig, WebConfig
from ..retries import RetryPolicy

SPEC_VERSION = 1
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class Resources(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one container asks of its machine (requests; ``memory_limit`` is enforced where given)."""

    cpu: NonNegative | None = None
    memory: Count | None = None  # MiB
    memory_limit: Count | None = None  # MiB
    gpu: str | None = None  # Modal's syntax: "T4", "A100:2", "any"


class MountSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A volume (by name) mounted at ``path`` in containers; the backend attaches its data there."""

    path: str
    volume: str
    read_only: bool = False


class FileMount(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Local content (``Image.add_local_dir``/``add_local_file``) shown read-only at ``remote``."""

    local: str
    remote: str


class ImageSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An image as the user wrote it (``shoal.Image``): build steps, content-hashed. A backend prepares it."""

    hash: str
    steps: list[tuple[str, Any]] = []  # (step, its parameters): base, registry, dockerfile, pip, apt, run, ...
    functions: list[str] = []  # blob ids of the pickled run_function callables, in step order

    @property
    def needs_build(self) -> bool:
        return any(name in ("pip", "run", "function") for name, _ in self.steps)

    @property
    def mounts(self) -> list[FileMount]:
        """``add_local_dir``/``add_local_file`` content, shown read-only in containers."""
        return [FileMount(v["local"], v["remote"]) for name, v in self.steps if name == "mount"]


class PreparedImage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An image as a backend prepared it: how to start a container in it."""

    python: str | None = None  # None: the server's interpreter
    hash: str = ""
    env: dict[str, str] = {}
    workdir: str | None = None
    pythonpath: list[str] = []
    mounts: list[FileMount] = []


class FunctionSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the control plane, a backend and a container need to know about one registered function."""

    v: int = SPEC_VERSION
    # scheduling
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    startup_timeout: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    retries: RetryPolicy = RetryPolicy()
    max_containers: Annotated[int, msgspec.Meta(ge=1)] = 1
    min_containers: Count = 0
    buffer_containers: Count = 0
    scaledown_window: NonNegative = 60.0
    single_use_containers: bool = False
    batch: BatchConfig | None = None
    concurrency: ConcurrencyConfig | None = None
    schedule: dict[str, Any] | None = None  # a Period/Cron spec (shoal.schedule): the control plane fires it
    web: WebConfig | None = None  # served over HTTP through the gateway (fastapi_endpoint, asgi_app, ...)
    web_method: str | None = None  # ... by this method of a class (an instance per container, @enter run first)
    # environment
    resources: Resources = Resources()
    env: dict[str, str | None] = {}
    secrets: list[str] = []  # names or ids from the SDK; ids once the server resolved them
    image: ImageSpec | None = None
    volumes: list[MountSpec] = []
    # code
    module: str | None = None  # None: the function travels pickled
    qualname: str = ""
    bundle: str | None = None  # blob id of the source bundle
    source_root: str | None = None  # where the bundle's files are on the client: tracebacks show those paths
    is_generator: bool = False
    modal_alias: bool = False  # containers read `import modal` as Shoal
    kind: Literal["function", "class"] = "function"
    methods: list[str] = []
    params_blob: str | None = None  # a class bound to parameter values: the blob holding them
    parent: str | None = None  # ... and the class function it was bound from

    @property
    def capacity(self) -> int:
        """How many inputs one container works on at once."""
        if self.concurrency is not None:
            return self.concurrency.target_inputs
        if self.batch is not None:
            return self.batch.max_batch_size
        return 1

    def replace(self, **changes: Any) -> FunctionSpec:
        return msgspec.structs.replace(self, **changes)

    def with_options(self, options: FunctionSpec) -> FunctionSpec:
        """This spec with the ``@app.function`` options of ``options`` (a ``with_options`` variant)."""
        return self.replace(**{name: getattr(options, name) for name in OPTION_FIELDS})

    def to_wire(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


# What FunctionOptions.spec() sets; the rest (code, image, secrets, volumes) the App adds at registration.
OPTION_FIELDS = ("timeout", "startup_timeout", "retries", "max_containers", "min_containers", "buffer_containers",
                 "scaledown_window", "single_use_containers", "batch", "concurrency", "schedule", "env", "resources",
                 "web")  # fmt: skip
AUTOSCALER_FIELDS = ("min_containers", "max_containers", "buffer_containers", "scaledown_window")


class InvalidSpec(ValueError):
    """A function spec the server cannot act on."""


def decode_spec(wire: Any) -> FunctionSpec:
    """A :class:`FunctionSpec` from its wire form (a dict, or JSON text); specs stored before versioning upgrade.

    Raises:
        InvalidSpec: a missing, mistyped or out-of-range field, or one this server does not know.
    """
    try:
        if isinstance(wire, (str, bytes)):
            wire = msgspec.json.decode(wire)
        if isinstance(wire, dict) and "v" not in wire:
            wire = _upgrade_v0(wire)
        spec = msgspec.convert(wire, FunctionSpec)
    except msgspec.ValidationError as exc:
        raise InvalidSpec(f"invalid function spec: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidSpec(f"malformed function spec: {exc}") from None
    if spec.min_containers > spec.max_containers:
        raise InvalidSpec(f"min_containers={spec.min_containers} is above max_containers={spec.max_containers}")
    return spec


def _upgrade_v0(wire: dict[str, Any]) -> dict[str, Any]:
    """A spec stored by Shoal before specs were versioned: flat resources, volumes with the server's directory,
    an ``is_async`` nobody read, and an image the client had built (not a recipe the server can build again)."""
    wire = dict(wire)
    if wire.get("image") is not None:
        raise InvalidSpec("this function was registered by an older Shoal with an image= that cannot be rebuilt "
                          "from what it stored: deploy (or run) its app again")  # fmt: skip
    wire.pop("is_async", None)
    wire["volumes"] = [{k: v for k, v in m.items() if k != "dir"} for m in wire.get("volumes") or []]
    resources = {k: wire.pop(k) for k in ("cpu", "memory", "memory_limit", "gpu") if k in wire}
    return {**wire, "v": SPEC_VERSION, "resources": {k: v for k, v in resources.items() if v is not None}}
