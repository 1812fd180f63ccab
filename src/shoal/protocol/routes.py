"""Route templates of the control plane's HTTP API: the server mounts them, clients fill them with :func:`path`.

``who`` in the server's table says which credential a route takes; here only the shapes live.
"""

from __future__ import annotations

from urllib.parse import quote

HEALTH = "/health"
SERVER = "/server"
OPENAPI = "/openapi.json"
# apps
APPS = "/apps"
APP = "/apps/{ref}"
DEPLOY = "/deploy"
APP_DEPLOYED = "/apps/{ref}/deployed"
APP_ROLLOVER = "/apps/{ref}/rollover"
APP_HISTORY = "/apps/{ref}/history"
APP_HEARTBEAT = "/apps/{ref}/heartbeat"
APP_DETACH = "/apps/{ref}/detach"
APP_STOP = "/apps/{ref}/stop"
APP_LOGS = "/apps/{ref}/logs"
LOGS = "/logs"  # POST: log lines of an app, a function, a call or a container, filtered (App/Function/Call.logs)
APP_FUNCTIONS = "/apps/{ref}/functions"
APP_FUNCTION = "/apps/{ref}/functions/{tag}"
APP_FUNCTION_CALLS = "/apps/{ref}/functions/{tag}/calls"
APP_CALLS = "/apps/{ref}/calls"  # recent calls of an app
# functions and calls
FUNCTION_BIND = "/functions/{function_id}/bind"
FUNCTION_CALLS = "/functions/{function_id}/calls"
FUNCTION_STATS = "/functions/{function_id}/stats"
GATEWAY_KEY_HEADER = b"x-shoal-gateway-key"  # the gateway's key for one web container, which answers nobody else
FUNCTION_KEY = "/functions/{function_id}/keyed"  # ?key=K: the call a key started (spawn once per key)
FUNCTION_AUTOSCALER = "/functions/{function_id}/autoscaler"
CALL = "/calls/{call_id}"
CALL_INPUTS = "/calls/{call_id}/inputs"
CALL_OUTPUTS = "/calls/{call_id}/outputs"
CALL_OUTPUT = "/calls/{call_id}/output"
CALL_ITEMS = "/calls/{call_id}/items"
CALL_CANCEL = "/calls/{call_id}/cancel"
CALL_RETRY = "/calls/{call_id}/retry"
CALL_FAILURES = "/calls/{call_id}/failures"  # failed inputs per status, and grouped by error
CALL_GRAPH = "/calls/{call_id}/graph"
CALLS_FIRST_OUTPUTS = "/first-outputs"  # of many calls at once (FunctionCall.gather)
BLOB = "/blobs/{blob_id}"
IMAGES = "/images"
# containers: the client's view
CONTAINERS = "/containers"
CONTAINER_STOP = "/containers/{container_id}/stop"
CONTAINER_LOGS = "/containers/{container_id}/logs"
CONTAINER_EXEC = "/containers/{container_id}/exec"  # run a command in it (shoal container exec)
# containers: their own protocol
CONTAINER_BOOT = "/containers/{container_id}/spec"
CONTAINER_STARTED = "/containers/{container_id}/started"
CONTAINER_EXCHANGE = "/containers/{container_id}/exchange"
CONTAINER_ITEMS = "/containers/{container_id}/items"
CONTAINER_HEARTBEAT = "/containers/{container_id}/heartbeat"
CONTAINER_WEB = "/containers/{container_id}/web"
CONTAINER_RAN = "/containers/{container_id}/ran"  # how a command it was told to run ended
# storage and administration
SECRETS = "/secrets"
SECRET_DELETE = "/secrets/{name}/delete"
TOKENS = "/tokens"
TOKEN_REVOKE = "/tokens/{name}/revoke"
KV_LIST = "/kv/{kind}"
KV_OPEN = "/kv/{kind}/open"
KV_DELETE = "/kv/{kind}/{object_id}/delete"
DICT_OP = "/dicts/{object_id}/op"
QUEUE_PUT = "/queues/{object_id}/put"
QUEUE_GET = "/queues/{object_id}/get"
QUEUE_SCAN = "/queues/{object_id}/scan"
QUEUE_LEN = "/queues/{object_id}/len"
QUEUE_CLEAR = "/queues/{object_id}/clear"
QUEUE_OP = "/queues/{object_id}/{op}"  # how clients name any of the five above
VOLUMES = "/volumes"
VOLUME_DELETE = "/volumes/{name}/delete"
VOLUME_LS = "/volumes/{name}/ls"
VOLUME_FILE = "/volumes/{name}/file"
VOLUME_RM = "/volumes/{name}/rm"
VOLUME_CP = "/volumes/{name}/cp"


def path(template: str, **params: object) -> str:
    """``template`` with its parameters filled in (each quoted as one path segment)."""
    return template.format(**{k: quote(str(v), safe="") for k, v in params.items()})


DASHBOARD = "/dashboard"  # the dashboard's pages (server/dashboard), for people in a browser


def dashboard_url(server_url: str, kind: str, object_id: str) -> str:
    """The dashboard page of an object (``kind``: apps, calls, containers) on the server at ``server_url`` (of
    several, comma-separated: the first)."""
    return f"{server_url.split(',')[0].strip().rstrip('/')}{DASHBOARD}/{kind}/{quote(object_id, safe='')}"
