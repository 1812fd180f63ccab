"""How a payload (a call's arguments, a result) travels: its pickle inline, or the id of the blob that holds it.

The first byte says which (:data:`INLINE_TAG`, :data:`BLOB_TAG`). The server reads only this framing (which blobs
a payload keeps alive): it never imports the pickling code (``shoal.serialization``), let alone unpickles.
"""

from __future__ import annotations

from collections.abc import Callable

INLINE_TAG = b"I"
BLOB_TAG = b"B"


def inline_payload(data: bytes) -> bytes:
    return INLINE_TAG + data


def blob_payload(blob_id: str) -> bytes:
    return BLOB_TAG + blob_id.encode()


def blob_ref(payload: bytes) -> str | None:
    """The blob id a payload points to, or None when it is inline."""
    return payload[1:].decode() if payload[:1] == BLOB_TAG else None


def payload_bytes(payload: bytes, fetch_blob: Callable[[str], bytes]) -> bytes:
    """The pickle inside a payload, fetching it from the blob store when it was offloaded."""
    ref = blob_ref(payload)
    return fetch_blob(ref) if ref is not None else payload[1:]
