"""The OpenAPI description of the control plane's JSON routes (served at ``/openapi.json``).

Data routes that carry msgpack (inputs, outputs, logs, container exchange) are left out: they are the SDK's
and the containers' wire protocol, not an API for people. Every route answers errors as ``Error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..protocol.messages import OutputStatus

OBJ: dict[str, Any] = {"type": "object"}
RETRY_STATUSES = {s.value for s in OutputStatus} - {OutputStatus.SUCCESS.value}  # as control.RETRY_STATUSES
NAME = {"type": "string", "minLength": 1, "maxLength": 64}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def _keyed() -> dict[str, Any]:
    """The call a key started: ``?key=`` (1 to 256 characters)."""
    op = _op("The call a key started", _props(["call_id"], call_id={"type": "string"}), params=["function_id"])
    key = {"type": "string", "minLength": 1, "maxLength": 256}
    op["parameters"].append({"name": "key", "in": "query", "required": True, "schema": key})
    return op


def _op(summary: str, ok: dict[str, Any] | None = None, body: dict[str, Any] | None = None,
        params: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ok or OBJ}}},
            "default": {
                "description": "Error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
        "parameters": [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}} for p in params
        ],
    }
    if body is not None:
        # a body whose fields are all optional may be left out entirely
        op["requestBody"] = {"required": bool(body.get("required")), "content": {"application/json": {"schema": body}}}
    return op


def _props(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def schema() -> dict[str, Any]:
    string = {"type": "string"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Shoal control plane", "version": __version__},
        "paths": {
            "/health": {"get": _op("Liveness", _props(["ok"], ok={"type": "boolean"}))},
            "/apps": {
                "get": _op("List apps", _props(["apps"], apps={"type": "array"})),
                "post": _op(
                    "Create an ephemeral app",
                    _props(["app_id"], app_id=string),
                    _props(["name"], name=NAME, mode={"type": "string", "enum": ["ephemeral", "detached"]}),
                ),
            },
            "/apps/{ref}": {"get": _op("An app by id or name", params=["ref"])},
            "/apps/{ref}/history": {"get": _op("Deployments of an app", params=["ref"])},
            "/apps/{ref}/functions": {
                "get": _op("Functions of an app", params=["ref"]),
                "post": _op(
                    "Register a function (the SDK's route)",
                    _props(["function_id"]),
                    _props(["tag", "spec"], tag=NAME, spec=OBJ),
                    ["ref"],
                ),  # fmt: skip
            },
            "/apps/{ref}/functions/{tag}": {"get": _op("Look a function up", params=["ref", "tag"])},
            "/apps/{ref}/functions/{tag}/calls": {"get": _op("Recent calls of a function", params=["ref", "tag"])},
            "/apps/{ref}/stop": {"post": _op("Stop an app", body=_props([], reason=string), params=["ref"])},
            "/apps/{ref}/rollover": {
                "post": _op(
                    "Give a deployed app fresh containers",
                    _props(["replaced"]),
                    body=_props([], strategy={"enum": ["rolling", "recreate"]}),
                    params=["ref"],
                ),  # fmt: skip
            },
            "/apps/{app_id}/heartbeat": {"post": _op("A client is alive", params=["app_id"])},
            "/apps/{app_id}/detach": {"post": _op("The client leaves; work goes on", params=["app_id"])},
            "/deploy": {"post": _op("Begin a deployment", _props(["app_id", "version"]), _props(["name"], name=NAME))},
            "/functions/{function_id}/calls": {
                "post": _op(
                    "Create a call",
                    _props(["call_id"], call_id=string),
                    _props(
                        ["kind"],
                        kind=string,
                        parent_input={"type": "string", "nullable": True},
                        key={"type": "string", "nullable": True, "minLength": 1, "maxLength": 256},
                    ),
                    ["function_id"],
                ),  # fmt: skip
            },
            "/functions/{function_id}/keyed": {"get": _keyed()},
            "/functions/{function_id}/bind": {
                "post": _op(
                    "Bind class parameters", body=_props(["params_blob"], params_blob=string), params=["function_id"]
                ),  # fmt: skip
            },
            "/calls/{call_id}": {"get": _op("A call's status", params=["call_id"])},
            "/calls/{call_id}/failures": {"get": _op("A call's failures per status and by error", params=["call_id"])},
            "/apps/{ref}/calls": {"get": _op("Recent calls of an app", params=["ref"])},
            "/calls/{call_id}/cancel": {
                "post": _op(
                    "Cancel a call", body=_props([], terminate_containers={"type": "boolean"}), params=["call_id"]
                ),  # fmt: skip
            },
            "/calls/{call_id}/retry": {
                "post": _op(
                    "Queue a finished call's failed inputs again",
                    _props(["queued", "missing"]),
                    body=_props(
                        [], statuses={"type": "array", "minItems": 1, "items": {"enum": sorted(RETRY_STATUSES)}}
                    ),
                    params=["call_id"],
                ),  # fmt: skip
            },
            "/calls/{call_id}/graph": {"get": _op("A call and its nested calls", params=["call_id"])},
            "/containers": {"get": _op("List containers", _props(["containers"], containers={"type": "array"}))},
            "/containers/{container_id}/stop": {
                "post": _op("Stop a container", body=_props([], graceful={"type": "boolean"}), params=["container_id"]),
            },
            "/secrets": {
                "get": _op("Secret names and keys", _props(["secrets"], secrets={"type": "array"})),
                "post": _op(
                    "Create a secret",
                    _props(["secret_id"]),
                    _props(
                        ["values"],
                        name={**NAME, "nullable": True},
                        values={"type": "object", "additionalProperties": {"type": "string"}},
                        overwrite={"type": "boolean"},
                    ),
                ),
            },  # fmt: skip
            "/tokens": {
                "get": _op("Issued tokens", _props(["tokens"], tokens={"type": "array"})),
                "post": _op("Issue a token", _props(["token"], token=string), _props(["name"], name=NAME)),
            },
        },
        "components": {"schemas": {"Error": ERROR}},
    }
