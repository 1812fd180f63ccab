"""Shoal: Modal's programming model on your own hardware. ``import shoal as modal``."""

__version__ = "0.1.0"

from . import exception  # noqa: E402
from ._context import current_function_call_id, current_input_id, is_local  # noqa: E402
from ._output import enable_output  # noqa: E402
from .app import App  # noqa: E402
from .calls import CallGraphNode, FunctionCall  # noqa: E402
from .cls import Cls, Obj  # noqa: E402
from .dict import Dict  # noqa: E402
from .functions import Function  # noqa: E402
from .image import Image  # noqa: E402
from .partial import (  # noqa: E402
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
from .queue import Queue  # noqa: E402
from .retries import Retries  # noqa: E402
from .schedule import Cron, Period  # noqa: E402
from .secret import Secret  # noqa: E402
from .volume import Volume  # noqa: E402

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
