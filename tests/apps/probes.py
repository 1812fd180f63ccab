"""Functions that probe, from inside a container, what it can reach (imported without the test fixtures)."""

from __future__ import annotations

import os

import shoal

app = shoal.App("tests-probes")


@app.function(secrets=[shoal.Secret.from_dict({"API_KEY": "s3cret"})])
def probe_state(paths: list[str], dirs: list[str]) -> dict[str, list[str]]:
    """Runs in a container: which of the server's files can it read, write or list?"""
    readable, writable, listed = [], [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                f.read(1)
            readable.append(path)
        except OSError:
            pass
        try:
            with open(path, "ab"):
                writable.append(path)
        except OSError:
            pass
    for d in dirs:
        try:
            if os.listdir(d):
                listed.append(d)
        except OSError:
            pass
        try:
            with open(os.path.join(d, "planted-by-a-container"), "w"):
                writable.append(d)
        except OSError:
            pass
    return {"readable": readable, "writable": writable, "listed": listed}


@app.function()
def try_admin_routes() -> dict[str, list[int]]:
    """Runs in a container: what the server answers to client-only routes, with no token and with its own."""
    import json
    import os
    import urllib.error
    import urllib.request

    url = os.environ["SHOAL_SERVER_URL"]
    out: dict[str, list[int]] = {}
    for method, path, body in [
        ("POST", "/apps", {"name": "evil"}),
        ("POST", "/deploy", {"name": "evil"}),
        ("GET", "/secrets", None),
        ("GET", "/apps", None),
        ("POST", "/tokens", {"name": "x"}),
    ]:
        for token in ("", os.environ["SHOAL_CONTAINER_TOKEN"], os.environ.get("SHOAL_TOKEN", "")):
            data = json.dumps(body).encode() if body is not None else None
            request = urllib.request.Request(url + path, data=data, method=method)
            request.add_header("content-type", "application/json")
            if token:
                request.add_header("authorization", f"Bearer {token}")
            try:
                status = urllib.request.urlopen(request).status
            except urllib.error.HTTPError as exc:
                status = exc.code
            out.setdefault(path, []).append(status)
    return out
