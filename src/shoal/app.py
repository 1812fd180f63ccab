"""``App``: a named group of functions, and ``app.run()`` which makes them callable."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import structs

from . import _context
from ._daemon import standing_url
from ._options import build_options
from ._output import LogPrinter, output_enabled
from ._sync import close_open, loop, run_sync
from .client import (
    Client,
    acquire_server,
    client_for,
    configured_url,
    dashboard_link,
    prestart_server,
    release_server,
    server_kind,
)
from .cls import Cls, class_methods, class_options
from .config import settings
from .exception import ImageBuildError, InvalidError
from .functions import Function
from .image import Image
from .logs import LogsManager, Target
from .protocol import routes
from .protocol.messages import ImageBuildReply, ImageBuildRequest
from .protocol.specs import FunctionSpec, ImageSpec, MountSpec
from .retries import Retries
from .schedule import Schedule
from .secret import Secret
from .serialization import dumps
from .volume import Volume

if TYPE_CHECKING:
    from ._bundle import Bundle

HEARTBEAT_INTERVAL = 3.0  # seconds between "this client is alive" pings while an app runs


class App:
    """A group of functions deployed and run together (``shoal.App`` ~ ``modal.App``).

    Args:
        name: the app's name (shown in logs and the CLI).
        image: default image for its functions (spec only for now: functions run in this Python environment).
        secrets, volumes: not implemented yet; passing any raises InvalidError.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        image: Any = None,
        secrets: list[Any] | None = None,
        volumes: dict[str, Any] | None = None,
        include_source: bool | None = None,
    ) -> None:
        if secrets is not None and not all(isinstance(s, Secret) for s in secrets):
            raise InvalidError("secrets must be a list of shoal.Secret")
        self.secrets = list(secrets or [])
        if volumes and not all(isinstance(v, Volume) for v in volumes.values()):
            raise InvalidError("volumes= maps absolute paths to shoal.Volume objects")
        self.volumes = dict(volumes or {})
        self.name = name
        self._image = image
        self.registered_functions: dict[str, Function] = {}
        self.registered_classes: dict[str, Cls] = {}
        self._images: dict[str, ImageSpec] = {}
        self._server_gpus: dict[str, int] = {}  # server URL -> GPUs its backend offers (for gpu= warnings)
        self.local_entrypoints: dict[str, Callable[..., Any]] = {}
        self._app_id: str | None = None
        self._server_url: str | None = None  # the server it runs on, while it runs
        self._log_seq = 0
        self._log_printer = LogPrinter()

    @property
    def image(self) -> Image:
        """The app's default image (``Image.debian_slim()`` when none was given), e.g. ``with app.image.imports():``."""
        return self._image if self._image is not None else Image.debian_slim()

    @image.setter
    def image(self, value: Image) -> None:
        self._image = value

    def __repr__(self) -> str:
        return f"App({self.name!r})"

    @property
    def app_id(self) -> str | None:
        """The id of the running app (``ap-...``), or None when it is not running."""
        return self._app_id

    @property
    def logs(self) -> LogsManager:
        """The app's log lines, every function's and Shoal's own (Modal 1.5): ``logs.fetch(since=...)``,
        ``logs.tail(n)``, ``logs.stream()``; each with ``.aio``. While it runs, or a deployed app by its name."""

        async def target() -> Target:
            url = self._server_url or configured_url() or standing_url()
            ref = self._app_id or self.name
            if not ref:
                raise InvalidError("This app has no name and is not running: its logs cannot be found.")
            return client_for(url), {"app": ref}, ref

        return LogsManager(target)

    def function(
        self,
        _f: Callable[..., Any] | None = None,
        *,
        image: Any = None,
        gpu: str | list[str] | None = None,
        cpu: float | tuple[float, float] | None = None,
        memory: int | tuple[int, int] | None = None,
        timeout: float = 300,
        retries: int | Retries | None = None,
        max_containers: int | None = None,
        min_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: float | None = None,
        secrets: list[Any] | None = None,
        volumes: dict[str, Any] | None = None,
        env: dict[str, str | None] | None = None,
        name: str | None = None,
        serialized: bool = False,
        single_use_containers: bool = False,
        startup_timeout: float | None = None,
        include_source: bool | None = None,
        concurrency_limit: int | None = None,
        keep_warm: int | None = None,
        container_idle_timeout: float | None = None,
        schedule: Schedule | None = None,
        **unsupported: Any,
    ) -> Any:
        """Register a function to run in containers. Parameters follow ``modal.App.function``.

        ``concurrency_limit``, ``keep_warm`` and ``container_idle_timeout`` are accepted with a
        DeprecationWarning as ``max_containers``, ``min_containers`` and ``scaledown_window``.

        Raises:
            InvalidError: an invalid value, or a Modal parameter Shoal does not implement yet.
        """
        options = build_options(
            self._image, image=image, gpu=gpu, cpu=cpu, memory=memory, timeout=timeout, retries=retries,
            max_containers=max_containers, min_containers=min_containers, buffer_containers=buffer_containers,
            scaledown_window=scaledown_window, secrets=secrets, volumes=volumes, env=env, serialized=serialized,
            single_use_containers=single_use_containers, startup_timeout=startup_timeout,
            concurrency_limit=concurrency_limit, keep_warm=keep_warm, container_idle_timeout=container_idle_timeout,
            schedule=schedule, unsupported=unsupported,
        )  # fmt: skip

        def decorate(f: Callable[..., Any]) -> Function:
            if isinstance(f, Function):
                raise InvalidError(f"{f.tag} is already a Shoal function; apply @app.function() once.")
            if not callable(f):
                raise InvalidError("@app.function() decorates a function.")
            tag = str(name or getattr(f, "__qualname__", None) or getattr(f, "__name__", "function"))
            if "<locals>" in tag and not serialized:
                raise InvalidError(
                    f"{tag} is defined inside another function, so a container cannot import it: define it at module "
                    "level, or pass serialized=True."
                )
            if tag in self.registered_functions:
                warnings.warn(
                    f"Function {tag} is registered twice on {self!r}; the second replaces the first.", stacklevel=3
                )
            marked = structs.replace(
                options, batch=getattr(f, "_shoal_batched", None), concurrency=getattr(f, "_shoal_concurrency", None),
                web=getattr(f, "_shoal_web", None),
            )  # fmt: skip
            fn = Function(f, tag, marked, self.name)
            self.registered_functions[tag] = fn
            return fn

        if _f is not None:
            return decorate(_f)
        return decorate

    def cls(self, _cls: type | None = None, *, name: str | None = None, **options: Any) -> Any:
        """Register a class whose ``@method()``s run in containers; takes ``@app.function``'s options.

        ``@enter()`` methods run once per container before its first input, ``@exit()`` methods when it stops;
        ``shoal.parameter()`` attributes give each set of values its own container pool.
        """
        if options.get("schedule") is not None:
            raise InvalidError("schedule= is for @app.function (Modal's @app.cls takes none): schedule a function "
                               "that calls the class's method.")  # fmt: skip
        known = inspect.signature(build_options).parameters
        unsupported = {k: v for k, v in options.items() if k not in known}
        built = build_options(self._image, unsupported=unsupported, **{k: v for k, v in options.items() if k in known})

        def decorate(user_cls: type) -> Cls:
            if not isinstance(user_cls, type):
                raise InvalidError("@app.cls() decorates a class.")
            tag = name or user_cls.__qualname__
            if "<locals>" in tag and not built.serialized:
                raise InvalidError(f"{tag} is defined inside a function: define it at module level.")
            web = {n: v._shoal_web for n, v in vars(user_cls).items() if hasattr(v, "_shoal_web")}
            if not class_methods(user_cls) and not web:
                raise InvalidError(f"{tag} has no @shoal.method(); mark the methods to call remotely.")
            options = class_options(user_cls, built)
            service = Function(user_cls, tag, options, self.name)
            self.registered_functions[tag] = service
            cls = Cls(user_cls, service)
            for method, config in web.items():  # each web method: an endpoint with containers of its own
                endpoint = Function(user_cls, f"{tag}.{method}", structs.replace(options, web=config), self.name)
                endpoint._web_method = method
                self.registered_functions[endpoint.tag] = endpoint
                cls._web_endpoints[method] = endpoint
            self.registered_classes[tag] = cls
            return cls

        return decorate(_cls) if _cls is not None else decorate

    def local_entrypoint(self, _f: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """Register a function that ``shoal run`` calls on the client, inside ``app.run()``."""

        def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
            self.local_entrypoints[name or f.__name__] = f
            return f

        return decorate(_f) if _f is not None else decorate

    # ---- running --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def run(self, *, show_logs: bool = True, detach: bool = False) -> Iterator[App]:
        """Make the app's functions callable for the duration of the block.

        Uses the server from SHOAL_SERVER_URL or a standing local ``shoal server``; otherwise starts an
        embedded server for the block. On exit, unfinished inputs are cancelled and containers stop.

        Args:
            show_logs: stream container output to this terminal.
            detach: keep the app running after this process exits (or dies) until its calls are done; runs on
                the standing server, which is started in the background if needed.
        """
        if not _context.is_local():
            raise InvalidError("app.run() cannot be used inside a container: call the functions directly.")
        if self._app_id is not None:
            raise InvalidError(f"{self!r} is already running.")
        if not detach:
            prestart_server()  # where an embedded server is needed: started now, waited for below
        loop()  # while a server starts: the SDK's event loop, and each root's bundle of code
        bundles = self._bundles()
        url = standing_url() if detach else acquire_server()
        client = client_for(url)
        self._server_url = url
        background: list[Any] = []
        try:
            if output_enabled():  # the first line of every run: which server it uses, and why that one
                print(f"✓ Using {server_kind(url)} at {url}", file=sys.stderr)
            run_sync(self._create(client, url, "detached" if detach else "ephemeral", bundles))
            _context.set_detached(self._app_id or "", detach)
            if output_enabled():
                print(f"✓ App {self.name or 'app'} started ({self._app_id})", file=sys.stderr)
                print(f"  View run at {dashboard_link(url, 'apps', self._app_id or '')}", file=sys.stderr)
                if server_kind(url) == "an embedded server for this run":  # the link dies with the run
                    print(
                        "  (the link works while this run lasts: its embedded server stops with it; "
                        "`shoal server start` keeps a server, and its dashboard, between runs)",
                        file=sys.stderr,
                    )
                unsandboxed = _unsandboxed_warning(client)
                if unsandboxed:
                    print(f"  ! {unsandboxed}", file=sys.stderr)
                for tag, fn in sorted(self.registered_functions.items()):
                    if fn._web_url:
                        print(f"  ├─ web endpoint {tag} => {fn._web_url}", file=sys.stderr)
            background.append(asyncio.run_coroutine_threadsafe(self._heartbeat(client), loop()))
            if show_logs:
                background.append(asyncio.run_coroutine_threadsafe(self._follow_logs(client), loop()))
            yield self
        finally:
            try:
                close_open()  # maps left mid-loop (Ctrl-C) end now: cancelled, or closed if the app goes on
                if self._app_id is not None:
                    _context.set_detached(self._app_id, False)
                    run_sync(self._leave(client, background, detach))
            finally:
                for fn in self.registered_functions.values():
                    fn._hydrate(None, None)
                self._app_id = None
                if not detach:
                    release_server(url)

    def _adopt(self, fresh: App) -> list[str]:
        """Register ``fresh`` (this app's module, imported again) into this running app: new requests and calls
        reach its code, in-flight ones finish on the old (``shoal serve``'s reload). Returns its web URLs."""
        if self._app_id is None or self._server_url is None:
            raise InvalidError(f"{self!r} is not running.")
        run_sync(fresh._register(client_for(self._server_url), self._server_url, self._app_id))
        fresh._app_id = self._app_id
        return [f"{tag} => {fn._web_url}" for tag, fn in sorted(fresh.registered_functions.items()) if fn._web_url]

    def deploy(self, name: str | None = None, *, strategy: str = "rolling") -> DeployResult:
        """Deploy the app to the standing server (started in the background if needed), replacing any
        previous version. Deployed functions are found with ``Function.from_name(app_name, function_name)``.
        ``strategy``: ``rolling`` (the old version's containers finish their inputs and scale down) or
        ``recreate`` (they stop at once; their inputs run again).
        """
        app_name = name or self.name
        if not app_name:
            raise InvalidError("Deploying needs a name: App('my-app') or deploy(name='my-app').")
        if strategy not in ("rolling", "recreate"):
            raise InvalidError(f"strategy={strategy!r}: use 'rolling' or 'recreate'")
        url = standing_url()
        result = run_sync(self._deploy(client_for(url), url, app_name, strategy))
        return result

    async def _deploy(self, client: Client, url: str, app_name: str, strategy: str = "rolling") -> DeployResult:
        resp = await client.request("POST", routes.DEPLOY, {"name": app_name})
        app_id, version = resp["app_id"], resp["version"]
        functions = await self._register(client, url, app_id)
        await client.request(
            "POST", routes.path(routes.APP_DEPLOYED, ref=app_id),
            {"version": version, "functions": functions, "strategy": strategy},
        )  # fmt: skip
        web = {tag: fn._web_url for tag, fn in self.registered_functions.items() if fn._web_url}
        return DeployResult(app_id, app_name, version, url, functions, web)

    async def _create(self, client: Client, url: str, mode: str, bundles: dict[str, Bundle]) -> None:
        resp, _ = await asyncio.gather(  # the code's upload does not wait for the app: both at once
            client.request("POST", routes.APPS, {"name": self.name or "app", "mode": mode}), _upload(client, bundles)
        )
        self._app_id = resp["app_id"]
        await self._register(client, url, resp["app_id"], bundles, uploaded=True)

    def _bundles(self) -> dict[str, Bundle]:
        """The code of this app's functions: one bundle per source root (every local module this process imported
        from it), keyed by the root."""
        from ._bundle import build_bundle, module_name_and_root  # not at the top: after a cold start's spawn

        bundles: dict[str, Bundle] = {}
        for fn in self.registered_functions.values():
            if not fn.options.serialized:
                module_name, root = module_name_and_root(sys.modules[fn.get_raw_f().__module__])
                if str(root) not in bundles:
                    bundles[str(root)] = build_bundle(root, module_name)
        return bundles

    async def _register(
        self, client: Client, url: str, app_id: str, bundles: dict[str, Bundle] | None = None, uploaded: bool = False
    ) -> dict[str, str]:
        """Upload code (``bundles``, built now if not given; unless ``uploaded`` already) and register every function
        of this app, all at once; returns tag -> function id."""
        from . import _modal_alias  # here, not at the top: after the embedded server is spawned (a cold start)
        from ._bundle import module_name_and_root

        if bundles is None:
            bundles = await asyncio.to_thread(self._bundles)
        if not uploaded:
            await _upload(client, bundles)
        default_max = os.cpu_count() or 1
        specs: list[tuple[str, Function, FunctionSpec, bytes | None]] = []
        for tag, fn in self.registered_functions.items():
            secrets = [await _secret_ref(client, s) for s in [*self.secrets, *fn.options.secrets]]
            mounts = [*self.volumes.items(), *fn.options.volumes]
            volumes = [MountSpec(**await asyncio.to_thread(v.mount_spec, path)) for path, v in mounts]
            pickled = None
            raw = fn.get_raw_f()
            if fn.options.serialized:
                pickled = fn.pickled()
                code: dict[str, Any] = {"module": None, "qualname": tag, "bundle": None}
            else:
                module_name, root = module_name_and_root(sys.modules[raw.__module__])
                code = {"module": module_name, "qualname": raw.__qualname__, "bundle": bundles[str(root)].blob_id,
                        "source_root": str(root)}  # fmt: skip
            spec = fn.options.spec(default_max).replace(
                secrets=secrets, image=await self._image_for(client, fn), volumes=volumes,
                is_generator=fn.is_generator,
                modal_alias=_modal_alias.installed(),  # its containers then read `import modal` as Shoal too
                **code,
            )  # fmt: skip
            if fn.is_generator and spec.retries.max_retries:
                warnings.warn(f"{tag}: retries are ignored for generator functions (a re-run would yield its items "
                              "again).", UserWarning, stacklevel=2)  # fmt: skip
                spec = spec.replace(retries=structs.replace(spec.retries, max_retries=0))
            if isinstance(raw, type):
                spec = spec.replace(kind="class", methods=sorted(class_methods(raw)), web_method=fn._web_method)
            specs.append((tag, fn, spec, pickled))
        path = routes.path(routes.APP_FUNCTIONS, ref=app_id)
        replies = await asyncio.gather(*(
            client.request("POST", path, {"tag": tag, "spec": spec.to_wire(), "pickled": pickled}, packed=True)
            for tag, _, spec, pickled in specs
        ))  # fmt: skip
        registered = {}
        for (tag, fn, spec, _), resp in zip(specs, replies, strict=True):
            fn._hydrate(resp["function_id"], url)
            fn._web_url = resp.get("web_url")
            fn._spec, fn._app_id = spec, app_id
            registered[tag] = resp["function_id"]
        return registered

    async def _image_for(self, client: Client, fn: Function) -> ImageSpec | None:
        """The function's image, prepared by the server's backend (once per content hash), its build log shown."""
        if fn.options.gpu:
            if client.url not in self._server_gpus:
                self._server_gpus[client.url] = int((await client.request("GET", routes.SERVER)).get("gpus", 0))
            if not self._server_gpus[client.url]:  # a cluster with GPUs places it; the server says so
                warn_if_no_gpu(fn.tag, fn.options.gpu)
        image = fn.options.image
        if image is None:
            return None
        if not isinstance(image, Image):
            raise InvalidError(f"image= must be a shoal.Image, not {type(image).__name__}")
        spec = self._images.get(image.content_hash)
        if spec is None:
            blobs = []
            for step in image.functions:  # run_function steps run at build time, inside the image
                data = dumps(step)
                blobs.append(hashlib.sha256(data).hexdigest())
                if not await client.has_blob(blobs[-1]):
                    await client.put_blob(blobs[-1], data)
            spec = image.spec(blobs)
            await build_image(client, spec)
            self._images[image.content_hash] = spec
        return spec

    async def _heartbeat(self, client: Client) -> None:
        while self._app_id is not None:
            with contextlib.suppress(Exception):
                await client.request("POST", routes.path(routes.APP_HEARTBEAT, ref=self._app_id), {})
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def _follow_logs(self, client: Client) -> None:
        self._log_seq = 0
        while self._app_id is not None:
            try:
                resp = await client.request(
                    "POST",
                    routes.path(routes.APP_LOGS, ref=self._app_id),
                    {"since": self._log_seq, "wait": 10.0},
                    packed=True,
                )
            except Exception:  # noqa: BLE001 - logs are best effort; never break the user's run
                await asyncio.sleep(1.0)
                continue
            self._print_logs(resp["logs"])

    def _print_logs(self, rows: list[list[Any]]) -> None:
        for row in rows:
            self._log_seq = max(self._log_seq, row[0])
        self._log_printer.write(rows)

    async def _leave(self, client: Client, background: list[Any], detach: bool) -> None:
        app_id = self._app_id
        for task in background:
            task.cancel()
        if detach:
            await client.request("POST", routes.path(routes.APP_DETACH, ref=app_id), {})
        else:
            await client.request("POST", routes.path(routes.APP_STOP, ref=app_id), {"reason": "its run ended"})
        with contextlib.suppress(Exception):  # the rest of the output, page by page, container stop lines included
            while True:
                body = {"since": self._log_seq, "wait": 0}
                resp = await client.request("POST", routes.path(routes.APP_LOGS, ref=app_id), body, packed=True)
                self._print_logs(resp["logs"])
                if not resp["logs"]:
                    break
        self._log_printer.finish()
        if detach and output_enabled():
            follow = f"follow it with `shoal app logs {app_id} -f`, stop it with `shoal app stop {app_id}`"
            print(f"✓ App {app_id} goes on without this process (detached) until its calls finish: {follow}.",
                  file=sys.stderr)  # fmt: skip


async def _upload(client: Client, bundles: dict[str, Bundle]) -> None:
    """Upload the code bundles the server does not have yet, all at once."""

    async def one(bundle: Bundle) -> None:
        if not await client.has_blob(bundle.blob_id):
            await client.put_blob(bundle.blob_id, bundle.data)

    await asyncio.gather(*(one(b) for b in bundles.values()))


class DeployResult(msgspec.Struct, frozen=True):
    """What ``App.deploy`` did."""

    app_id: str
    name: str
    version: int
    url: str
    functions: dict[str, str]
    web_urls: dict[str, str] = dataclasses.field(default_factory=dict)  # tag -> URL of each web endpoint

    @property
    def dashboard_url(self) -> str:
        """The app's page on the server's dashboard."""
        return dashboard_link(self.url, "apps", self.app_id)


async def _secret_ref(client: Client, secret: Secret) -> str:
    """The server's reference to a secret: its name, or the id of the inline values once uploaded."""
    if secret._name is not None:
        return secret._name
    if client.url not in secret._ids:
        resp = await client.request("POST", routes.SECRETS, {"values": secret._values})
        secret._ids[client.url] = resp["secret_id"]
    return secret._ids[client.url]


async def build_image(client: Client, image: ImageSpec) -> None:
    """Have the server prepare ``image``, printing its build log as it comes.

    Raises:
        ImageBuildError: what the server's backend cannot provide, or a failed build step.
    """
    since = 0
    while True:
        ask = ImageBuildRequest(image, since, wait=10.0)
        reply = await client.call("POST", routes.IMAGES, ask, ImageBuildReply)
        if since == 0 and reply.state == "ready":  # built before (another run, a reload): its log is old news
            print(f"  [image] {image.hash[:12]} ready (built before)", file=sys.stderr, flush=True)
            return
        for line in reply.lines:
            print(f"  [image] {line}", file=sys.stderr, flush=True)
        since += len(reply.lines)
        if reply.state == "failed":
            raise ImageBuildError(reply.error or f"building image {image.hash} failed")
        if reply.state == "ready":
            return


_gpu_warned: set[str] = set()


def warn_if_no_gpu(tag: str, gpu: str) -> None:
    """gpu= on a machine without one: run on CPU with one warning (an error with SHOAL_STRICT_GPU=1)."""
    import shutil

    if shutil.which("nvidia-smi"):
        return
    message = f"{tag} asks for gpu={gpu!r}, but this machine has no GPU: it runs on CPU."
    if settings().strict_gpu:
        raise InvalidError(message + " (SHOAL_STRICT_GPU=1 makes this an error.)")
    if tag not in _gpu_warned:
        _gpu_warned.add(tag)
        warnings.warn(message + " Set SHOAL_STRICT_GPU=1 to make this an error.", UserWarning, stacklevel=2)


_sandbox_said: set[str] = set()  # servers whose lack of a sandbox this process has told its user of


def _unsandboxed_warning(client: Client) -> str:
    """Once per server and process: a warning that its containers run without a sandbox, or ''."""
    if client.url in _sandbox_said:
        return ""
    _sandbox_said.add(client.url)
    try:
        info = run_sync(client.request("GET", routes.SERVER))
    except Exception:  # noqa: BLE001 - only a warning: the run goes on without it
        return ""
    if info.get("sandbox", True):
        return ""
    return (
        "this server's containers run unsandboxed (bubblewrap is missing or cannot create namespaces): no "
        "private /tmp, no volumes, and they see this machine's files. Install bubblewrap on the server's "
        "machine."
    )
