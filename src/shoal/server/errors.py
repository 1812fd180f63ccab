"""What a request asked that the control plane's state does not allow; ``routes/http.py`` answers each kind with
its HTTP status in one place. Each also is the builtin it refines, so code that catches ``KeyError`` (say) still
catches a :class:`NotFound`."""

from __future__ import annotations


class RequestError(Exception):
    """A request the control plane refuses; ``status`` and ``kind`` (a ``shoal.exception`` name) say how."""

    status = 400
    kind = "InvalidError"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.kind


class NotFound(RequestError, KeyError):
    """Raised when a referenced app, function, call, container, blob, secret or object does not exist."""

    status, kind = 404, "NotFoundError"

    def __str__(self) -> str:
        text = super().__str__()
        return text if " " in text else f"unknown id {text!r}"


class Invalid(RequestError, ValueError):
    """Raised when a request is malformed or its values are out of range."""


class Conflict(RequestError, PermissionError):
    """Raised when a request conflicts with the state: a stopped app, a name that exists."""

    status = 409


class TooLarge(RequestError, OverflowError):
    """Raised when a body, value or file is over its limit."""

    status, kind = 413, "RequestSizeError"


class Forbidden(RequestError, PermissionError):
    """Raised when a valid credential reaches for what it may not: a container for another app's volume."""

    status, kind = 403, "AuthError"
