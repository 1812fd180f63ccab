"""Validating ``@app.function``/``@app.cls`` options into a :class:`FunctionOptions` (Modal's names and ranges)."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from .exception import InvalidError, deprecation_warning
from .functions import FunctionOptions
from .retries import Retries, parse_retries
from .schedule import Schedule
from .secret import Secret
from .volume import Volume

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# Modal parameters with no meaning on a single machine: accepted with a warning, never silently.
_PLACEMENT_ONLY = {"cloud", "region", "routing_region", "nonpreemptible", "i6pn", "ephemeral_disk"}
# Modal parameters that Shoal does not implement yet: rejected with a clear error.
_NOT_YET = {
    "network_file_systems": "network file systems",
    "proxy": "proxies",
    "enable_memory_snapshot": "memory snapshots",
    "block_network": "network blocking",
    "max_inputs": "max_inputs",
    "allow_concurrent_inputs": "concurrent inputs (@concurrent)",
}


def check_unsupported(unsupported: dict[str, Any]) -> None:
    """Warn about placement-only Modal options, reject unimplemented and unknown ones."""
    for key, value in unsupported.items():
        if key == "is_generator":  # Modal's override of generator detection: Shoal sees it from the function
            continue
        if key in _NOT_YET:
            if value:
                raise InvalidError(f"{key}= is not supported by Shoal yet ({_NOT_YET[key]}); remove it to run here.")
        elif key in _PLACEMENT_ONLY:
            if value:
                _warn_at_caller(f"{key}={value!r} has no effect on a Shoal backend; ignored.")
        else:
            raise InvalidError(f"@app.function() got an unknown parameter {key!r}.{_did_you_mean(key)}")


def _warn_at_caller(message: str) -> None:
    """A UserWarning attributed to the user's line that set the option (not to Shoal's or importlib's); said by
    the caller only (a container imports the same module, and its output reaches the caller's terminal too)."""
    from .config import in_container

    if in_container():
        return
    frame = sys._getframe(1)
    while frame.f_back is not None and (frame.f_code.co_filename.startswith(_PACKAGE_DIR)
                                        or "importlib" in frame.f_code.co_filename):  # fmt: skip
        frame = frame.f_back
    warnings.warn_explicit(message, UserWarning, frame.f_code.co_filename, frame.f_lineno,
                           module=frame.f_globals.get("__name__"), registry=frame.f_globals.setdefault(
                               "__warningregistry__", {}))  # fmt: skip


def _did_you_mean(key: str) -> str:
    """A hint naming the known option closest to a mistyped one, or ''."""
    import difflib
    import inspect

    known = [*inspect.signature(build_options).parameters, *_NOT_YET, *_PLACEMENT_ONLY]
    close = difflib.get_close_matches(key, [k for k in known if k not in ("default_image", "unsupported")], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _validate_positive(name: str, value: float | None, upper: float | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (upper and value > upper):
        bound = f" and at most {upper:g}" if upper else ""
        raise InvalidError(f"{name}={value!r} is invalid: it must be a number above 0{bound}.")


def _validate_count(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidError(f"{name}={value!r} is invalid: it must be a whole number >= 0.")


def _request(value: Any) -> Any:
    """cpu/memory may be a (request, limit) pair; the request is what placement uses."""
    if isinstance(value, tuple):
        return value[0]
    return value


def build_options(
    default_image: Any,
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
    serialized: bool = False,
    single_use_containers: bool = False,
    startup_timeout: float | None = None,
    concurrency_limit: int | None = None,
    keep_warm: int | None = None,
    container_idle_timeout: float | None = None,
    schedule: Schedule | None = None,
    unsupported: dict[str, Any] | None = None,
) -> FunctionOptions:
    """Validate the options; deprecated Modal names map to the new ones with a DeprecationWarning.

    Raises:
        InvalidError: an invalid value, or a Modal option Shoal does not implement yet.
    """
    if concurrency_limit is not None:
        deprecation_warning("concurrency_limit is deprecated: use max_containers", 4)
        max_containers = max_containers if max_containers is not None else concurrency_limit
    if keep_warm is not None:
        deprecation_warning("keep_warm is deprecated: use min_containers", 4)
        min_containers = min_containers if min_containers is not None else keep_warm
    if container_idle_timeout is not None:
        deprecation_warning("container_idle_timeout is deprecated: use scaledown_window", 4)
        scaledown_window = scaledown_window if scaledown_window is not None else container_idle_timeout
    check_unsupported(unsupported or {})
    if secrets is not None and not all(isinstance(s, Secret) for s in secrets):
        raise InvalidError("secrets must be a list of shoal.Secret")
    if volumes and not all(
        isinstance(k, str) and k.startswith("/") and isinstance(v, Volume) for k, v in volumes.items()
    ):
        raise InvalidError("volumes= maps absolute paths to shoal.Volume objects: {'/data': Volume.from_name('x')}")
    _validate_positive("timeout", timeout, 24 * 3600)
    _validate_positive("startup_timeout", startup_timeout, 24 * 3600)
    _validate_positive("scaledown_window", scaledown_window, 24 * 3600)
    for count_name, count in (("max_containers", max_containers), ("min_containers", min_containers),
                              ("buffer_containers", buffer_containers)):  # fmt: skip
        _validate_count(count_name, count)
    if max_containers == 0:
        raise InvalidError("max_containers=0 would never run anything: use at least 1.")
    if max_containers is not None and min_containers is not None and min_containers > max_containers:
        raise InvalidError(f"min_containers={min_containers} is above max_containers={max_containers}.")
    if schedule is not None and not isinstance(schedule, Schedule):
        raise InvalidError(f"schedule= takes shoal.Period(...) or shoal.Cron(...), not {type(schedule).__name__}.")
    if env is not None and not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in env.items()):
        raise InvalidError("env must map strings to strings (or None).")
    gpu_text = gpu if isinstance(gpu, str) or gpu is None else ",".join(gpu)
    if gpu_text is not None:
        from .backends.resources import parse_gpu

        parse_gpu(gpu_text)  # a form that is none of Modal's is refused here, on the user's line
    return FunctionOptions(
        timeout=float(timeout), startup_timeout=startup_timeout, retries=parse_retries(retries),
        max_containers=max_containers, min_containers=min_containers or 0, buffer_containers=buffer_containers or 0,
        scaledown_window=float(scaledown_window if scaledown_window is not None else 60.0),
        cpu=_request(cpu), memory=_request(memory),
        memory_limit=memory[1] if isinstance(memory, tuple) else None,
        gpu=gpu_text, env=dict(env or {}),
        serialized=serialized, single_use_containers=single_use_containers, image=image or default_image,
        secrets=tuple(secrets or ()), volumes=tuple(sorted((volumes or {}).items())),
        schedule=schedule.spec() if schedule is not None else None,
    )  # fmt: skip
