"""Shoal's exception tree (names follow Modal's ``modal.exception``).

::

    Exception
     └── Error                      base of everything Shoal raises on its own behalf
          ├── InvalidError          bad arguments or configuration from the user
          │    └── NotSupportedError  a Modal API Shoal does not have yet (also an AttributeError)
          ├── NotFoundError         an id or name that the server does not know
          ├── AuthError             missing or wrong token
          ├── ConnectionError       the control plane cannot be reached
          ├── RemoteError           the control plane reported a failure
          │    ├── ServerError      the server answered with a 5xx
          │    ├── ImageBuildError  an Image could not be built (or the host lacks what it needs)
          │    └── ResourceExhaustedError  disk full, or rate-limited
          ├── ExecutionError        something went wrong running the user's function
          ├── SerializationError    arguments or results that cannot be pickled
          ├── DeserializationError  payloads that cannot be unpickled
          ├── RequestSizeError      a payload over the configured maximum
          └── TimeoutError          base of Shoal's timeouts
               ├── FunctionTimeoutError   an input ran past its per-attempt timeout
               └── OutputExpiredError     results older than the retention window
    BaseException
     └── InputCancellation          the input was cancelled (deliberately not an Exception)

User exceptions raised inside a function come back to the caller as their own type, with the remote
traceback attached as ``__cause__`` (a :class:`RemoteTraceback`), like ``concurrent.futures`` does.
"""

from __future__ import annotations

import warnings


class Error(Exception):
    """Raised for every failure that Shoal itself detects; base of the tree."""


class InvalidError(Error):
    """Raised when the user passes invalid arguments or configuration."""


class AlreadyExistsError(InvalidError):
    """Raised when creating a named object that exists already (``Dict.objects.create`` ...)."""


class NotSupportedError(InvalidError, AttributeError):
    """Raised when a program uses a Modal API that Shoal does not support yet (``modal.X`` under ``shoal run``)."""


class NotFoundError(Error):
    """Raised when an id or name is unknown to the server."""


class AuthError(Error):
    """Raised when a token is missing or wrong."""


class ConnectionError(Error):  # noqa: A001 - Modal's name
    """Raised when the Shoal control plane cannot be reached."""


class RemoteError(Error):
    """Raised when the control plane reports a failure it could not recover from."""


class ServerError(RemoteError):
    """Raised when the server answers a request with an internal (5xx) error."""


class ExecutionError(Error):
    """Raised when running the user's function failed in a way that has no better exception (e.g. a crash)."""


class SerializationError(Error):
    """Raised when arguments or a return value cannot be serialized with cloudpickle."""


class DeserializationError(Error):
    """Raised when a payload cannot be deserialized."""


class RequestSizeError(Error):
    """Raised when a payload is larger than the configured maximum."""


class ImageBuildError(RemoteError):
    """Raised when an Image cannot be built, or needs what this machine lacks; says which step and why."""


class ResourceExhaustedError(RemoteError):
    """Raised when the server is out of a resource: disk space for its store, or the rate limit of a token."""


class TimeoutError(Error):  # noqa: A001 - Modal's name
    """Base class for Shoal's timeouts."""


class FunctionTimeoutError(TimeoutError):
    """Raised when an input runs past its function's per-attempt ``timeout``."""


class OutputExpiredError(TimeoutError):
    """Raised when the results of a call were deleted after the retention window."""


class InputCancellation(BaseException):
    """Raised when an input was cancelled (``FunctionCall.cancel`` or the app stopping).

    A ``BaseException`` on purpose, as in Modal: a bare ``except Exception`` in user code does not swallow it.
    """


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised inside a container (set as ``__cause__``)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\nRemote traceback:\n{self.tb}"""'


class DeprecationError(UserWarning):
    """Warning category for deprecated Modal features that Shoal still accepts."""


def deprecation_warning(message: str, stacklevel: int = 3) -> None:
    """Emit a ``DeprecationWarning`` pointing at the user's line."""
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel)


__all__ = [
    "AuthError",
    "ConnectionError",
    "DeprecationError",
    "DeserializationError",
    "Error",
    "ExecutionError",
    "FunctionTimeoutError",
    "ImageBuildError",
    "InputCancellation",
    "InvalidError",
    "NotFoundError",
    "OutputExpiredError",
    "RemoteError",
    "RemoteTraceback",
    "RequestSizeError",
    "ResourceExhaustedError",
    "SerializationError",
    "ServerError",
    "TimeoutError",
]
