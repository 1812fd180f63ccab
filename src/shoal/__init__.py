"""Shoal: Modal's programming model on your own hardware. ``import shoal as modal``."""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

# the public names and the modules they live in: imported on first use (PEP 562), so that a process that needs
# only a part of Shoal (the control plane, a container before user code runs) does not import the whole SDK
_HOMES = {
    "App": "app", "CallGraphNode": "calls", "FunctionCall": "calls", "Cls": "cls", "Obj": "cls", "Dict": "dict",
    "Function": "functions", "Image": "image", "Queue": "queue", "Retries": "retries", "Cron": "schedule",
    "Period": "schedule", "Secret": "secret", "Volume": "volume", "enable_output": "_output",
    "current_function_call_id": "_context", "current_input_id": "_context", "is_local": "_context",
    "asgi_app": "partial", "batched": "partial", "concurrent": "partial", "enter": "partial", "exit": "partial",
    "fastapi_endpoint": "partial", "method": "partial", "parameter": "partial", "web_endpoint": "partial",
    "web_server": "partial", "wsgi_app": "partial",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name == "exception":
        return importlib.import_module(".exception", __name__)
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from . import exception
    from ._context import current_function_call_id, current_input_id, is_local
    from ._output import enable_output
    from .app import App
    from .calls import CallGraphNode, FunctionCall
    from .cls import Cls, Obj
    from .dict import Dict
    from .functions import Function
    from .image import Image
    from .partial import (
        asgi_app,
        batched,
        concurrent,
        enter,
        exit,
        fastapi_endpoint,
        method,
        parameter,
        web_endpoint,
        web_server,
        wsgi_app,
    )
    from .queue import Queue
    from .retries import Retries
    from .schedule import Cron, Period
    from .secret import Secret
    from .volume import Volume

__all__ = [
    "App",
    "CallGraphNode",
    "Cls",
    "Cron",
    "Dict",
    "Obj",
    "Period",
    "Queue",
    "Function",
    "FunctionCall",
    "Image",
    "Retries",
    "Secret",
    "Volume",
    "__version__",
    "asgi_app",
    "batched",
    "concurrent",
    "enter",
    "exit",
    "fastapi_endpoint",
    "method",
    "parameter",
    "current_function_call_id",
    "current_input_id",
    "enable_output",
    "exception",
    "is_local",
    "web_endpoint",
    "web_server",
    "wsgi_app",
]
