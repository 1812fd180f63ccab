"""Retry policy (``shoal.Retries``) and its backoff maths."""

from __future__ import annotations

import msgspec

from .exception import InvalidError

MAX_RETRIES = 10


class Retries:
    """Retry policy for a function's inputs, with Modal's defaults and validation ranges.

    Args:
        max_retries: retries after the first attempt, 0..10.
        backoff_coefficient: multiplier applied to the delay after each retry, 1.0 (fixed) .. 10.0.
        initial_delay: seconds before the first retry, 0..60.
        max_delay: upper bound on any delay, 1..60 seconds.

    Raises:
        InvalidError: a value outside its range.
    """

    def __init__(
        self,
        *,
        max_retries: int,
        backoff_coefficient: float = 2.0,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
    ) -> None:
        if not isinstance(max_retries, int) or not 0 <= max_retries <= MAX_RETRIES:
            raise InvalidError(f"Invalid max_retries {max_retries!r}: it must be an integer from 0 to {MAX_RETRIES}.")
        if not 1.0 <= max_delay <= 60.0:
            raise InvalidError(f"Invalid max_delay {max_delay!r}: it must be between 1 and 60 seconds.")
        if not 0.0 <= initial_delay <= 60.0:
            raise InvalidError(f"Invalid initial_delay {initial_delay!r}: it must be between 0 and 60 seconds.")
        if not 1.0 <= backoff_coefficient <= 10.0:
            raise InvalidError(
                f"Invalid backoff_coefficient {backoff_coefficient!r}: it must be between 1.0 (fixed delay) and 10.0."
            )
        self.max_retries = max_retries
        self.backoff_coefficient = float(backoff_coefficient)
        self.initial_delay = float(initial_delay)
        self.max_delay = float(max_delay)

    def __repr__(self) -> str:
        return (
            f"Retries(max_retries={self.max_retries}, backoff_coefficient={self.backoff_coefficient}, "
            f"initial_delay={self.initial_delay}, max_delay={self.max_delay})"
        )

    def to_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.backoff_coefficient, self.initial_delay, self.max_delay)


class RetryPolicy(msgspec.Struct, frozen=True):
    """The wire/store form of a retry policy."""

    max_retries: int = 0
    backoff_coefficient: float = 2.0
    initial_delay: float = 1.0
    max_delay: float = 60.0

    def delay_before_retry(self, failed_attempts: int) -> float | None:
        """Seconds to wait before the next attempt after ``failed_attempts`` failures, or None when spent."""
        if failed_attempts > self.max_retries:
            return None
        delay = self.initial_delay * self.backoff_coefficient ** (failed_attempts - 1)
        return min(delay, self.max_delay)


def parse_retries(retries: int | Retries | None) -> RetryPolicy:
    """Turn the user's ``retries=`` into a policy; an int means fixed 1 s delays, as in Modal."""
    if retries is None:
        return RetryPolicy()
    if isinstance(retries, bool) or not isinstance(retries, (int, Retries)):
        raise InvalidError(f"retries must be an int or shoal.Retries, not {type(retries).__name__}.")
    if isinstance(retries, int):
        return Retries(max_retries=retries, backoff_coefficient=1.0, initial_delay=1.0).to_policy()
    return retries.to_policy()
