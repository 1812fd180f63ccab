"""Client side of payloads: arguments out (inline or via the blob store), outputs back into values or errors."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from . import serialization
from .client import Client
from .config import INLINE_PAYLOAD_LIMIT, settings
from .exception import ExecutionError, FunctionTimeoutError, InputCancellation, RequestSizeError
from .protocol import payloads

ASK_BEFORE_UPLOAD = 8 * 1024 * 1024
PARALLEL_UPLOADS = 4  # blob uploads of one batch in flight at once
HASH_ON_THREAD = 4 * 1024 * 1024


def check_size(data: bytes, function_name: str, limit: int | None = None) -> None:
    """Refuse arguments over the payload limit (``limit``: the setting, read once by callers in a loop)."""
    limit = settings().max_payload_bytes if limit is None else limit
    if len(data) > limit:
        raise RequestSizeError(
            f"The arguments of {function_name} are {len(data)} bytes once pickled, over the limit of {limit} bytes "
            "(SHOAL_MAX_PAYLOAD_BYTES). Store large data in a file or volume and pass its path."
        )


def inline_value(status: str, data: bytes) -> tuple[bool, Any] | None:
    """(True, value) for an inline success, decoded here and now; None for anything that needs more."""
    if status == "SUCCESS" and data[:1] == payloads.INLINE_TAG:
        return True, serialization.loads(memoryview(data)[1:])
    return None


async def to_payloads(client: Client, items: list[bytes], digests: list[str | None] | None = None) -> list[bytes]:
    """:func:`to_payload` for a batch: no await per input when all are inline; large ones uploaded a few at a time
    (``digests``: their sha256, when the caller has it already)."""
    limit = INLINE_PAYLOAD_LIMIT
    tag = payloads.INLINE_TAG
    if all(len(data) <= limit for data in items):
        return [tag + data for data in items]
    uploads = asyncio.Semaphore(PARALLEL_UPLOADS)

    async def one(data: bytes, digest: str | None) -> bytes:
        if len(data) <= limit:
            return tag + data
        async with uploads:
            return await to_payload(client, data, digest)

    return list(await asyncio.gather(*(one(d, digests[i] if digests else None) for i, d in enumerate(items))))


async def to_payload(client: Client, data: bytes, digest: str | None = None) -> bytes:
    """Wrap pickled arguments: inline when small, else uploaded once to the blob store and referenced."""
    if len(data) <= INLINE_PAYLOAD_LIMIT:
        return payloads.inline_payload(data)
    blob_id = digest or await blob_digest(data)
    # asking first saves sending a big blob twice; for a few MiB over loopback the question costs more
    if len(data) < ASK_BEFORE_UPLOAD or not await client.has_blob(blob_id):
        await client.put_blob(blob_id, data, payload=True)
    return payloads.blob_payload(blob_id)


async def blob_digest(data: bytes) -> str:
    """The sha256 of a payload that goes to the blob store (on a thread when large: hashing releases the GIL)."""
    if len(data) < HASH_ON_THREAD:
        return hashlib.sha256(data).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())


async def decode_output(client: Client, status: str, data: bytes) -> tuple[bool, Any]:
    """(ok, value): the return value, or the exception the caller should see for a failed input."""
    if (found := inline_value(status, data)) is not None:
        return found
    if status in ("SUCCESS", "FAILURE"):
        ref = payloads.blob_ref(data)
        raw = await client.get_blob(ref) if ref is not None else data[1:]
        if status == "SUCCESS":
            return True, serialization.loads(raw)
        return False, serialization.rebuild_failure(raw)
    message = data.decode(errors="replace")
    if status == "TIMEOUT":
        return False, FunctionTimeoutError(message)
    if status == "CANCELLED":
        return False, InputCancellation(message)
    return False, ExecutionError(message)
