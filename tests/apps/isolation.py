"""Two apps for the isolation tests: a victim with a secret and a volume, and an attacker whose code probes, from
inside its own container, what of the victim it can reach (imported without the test fixtures)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import shoal

victim = shoal.App("tests-victim")
attacker = shoal.App("tests-attacker")
VICTIM_SECRET = "victim-card-4111-1111"


@victim.function(secrets=[shoal.Secret.from_dict({"VICTIM_KEY": VICTIM_SECRET})])
def victim_fn(x: int) -> int:
    return x + 1


def _request(method: str, path: str, body: bytes | None = None, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(os.environ["SHOAL_SERVER_URL"] + path, data=body, method=method)
    request.add_header("content-type", "application/msgpack")
    request.add_header("authorization", f"Bearer {token or os.environ['SHOAL_CONTAINER_TOKEN']}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@attacker.function()
def reach_other_container(victim_id: str) -> dict[str, int]:
    """Runs in a container: the status of each container route about another container, with its own token."""
    import msgpack

    own = os.environ["SHOAL_CONTAINER_ID"]
    out = {"own spec": _request("GET", f"/containers/{own}/spec")[0]}
    out["spec"], body = _request("GET", f"/containers/{victim_id}/spec")
    assert VICTIM_SECRET.encode() not in body
    exchange = msgpack.packb({"want": 1, "reports": [], "releases": [], "wait": 0.0})
    out["exchange"] = _request("POST", f"/containers/{victim_id}/exchange", exchange)[0]
    out["heartbeat"] = _request("POST", f"/containers/{victim_id}/heartbeat", msgpack.packb({"logs": []}))[0]
    out["started"] = _request("POST", f"/containers/{victim_id}/started", msgpack.packb({"error": None}))[0]
    forged = os.environ["SHOAL_CONTAINER_TOKEN"].replace(own, victim_id)
    out["forged token"] = _request("GET", f"/containers/{victim_id}/spec", token=forged)[0]
    return out


@attacker.function()
def reach_volume(name: str) -> dict[str, int]:
    """Runs in a container: the status of each volume route on a volume its function does not mount."""
    out = {"ls": _request("POST", f"/volumes/{name}/ls", json.dumps({"path": "/"}).encode())[0]}
    out["read"] = _request("GET", f"/volumes/{name}/file?path=data.txt")[0]
    out["write"] = _request("PUT", f"/volumes/{name}/file?path=planted.txt", b"x")[0]
    out["rm"] = _request("POST", f"/volumes/{name}/rm", json.dumps({"path": "/", "recursive": True}).encode())[0]
    return out


@attacker.function()
def reach_host(server_pid: int) -> dict[str, object]:
    """Runs in a container: who it is, what of the host's processes it sees, whether it can trace the server."""
    import ctypes
    import stat

    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    environ_readable = []
    for pid in pids + [server_pid]:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
            own = os.environ["SHOAL_CONTAINER_TOKEN"].encode()
            if b"SHOAL_CONTAINER_TOKEN=" in environ and own not in environ:  # another's token, or the server's env
                environ_readable.append(pid)
        except OSError:
            pass
    libc = ctypes.CDLL(None, use_errno=True)
    traced = libc.ptrace(16, server_pid, None, None) == 0  # PTRACE_ATTACH
    try:
        server_root = os.listdir(f"/proc/{server_pid}/root/")
    except OSError:
        server_root = []
    tmp = os.statvfs("/tmp")
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "cap_eff": int(status["CapEff"].strip(), 16),
        "cap_bnd": int(status["CapBnd"].strip(), 16),
        "pids": pids,
        "server visible": os.path.exists(f"/proc/{server_pid}"),
        "environ of others": environ_readable,
        "traced": traced,
        "server root": server_root,
        "tmp_bytes": tmp.f_blocks * tmp.f_frsize,
        "tmp sticky": bool(os.stat("/tmp").st_mode & stat.S_ISVTX),
        "home": os.environ.get("HOME"),
        "env": sorted(os.environ),
    }


@attacker.function()
def escape(marker: str) -> int:
    """Runs in a container: a grandchild that double-forks into its own session and keeps writing its pid."""
    import subprocess
    import sys

    code = (
        "import os, time\n"
        "if os.fork(): os._exit(0)\n"
        "os.setsid()\n"
        "if os.fork(): os._exit(0)\n"
        f"open({marker!r} + '.tmp', 'w').write(str(os.getpid()))\n"
        f"os.replace({marker!r} + '.tmp', {marker!r})\n"
        "while True: time.sleep(0.2)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    while not os.path.exists(marker):
        pass
    return int(open(marker).read() or 0)


links_volume = shoal.Volume.from_name("tests-isolation-links", create_if_missing=True)


@attacker.function(volumes={"/data": links_volume})
def plant_links(target: str) -> list[str]:
    """Runs in a container: links to the server's files, planted in its own volume."""
    os.makedirs("/data/dir", exist_ok=True)
    for name, points_to in {"token-link": target, "state-link": os.path.dirname(target)}.items():
        if not os.path.lexists(f"/data/dir/{name}"):
            os.symlink(points_to, f"/data/dir/{name}")
    return sorted(os.listdir("/data/dir"))


@attacker.function()
def reach_dashboard(victim_container: str) -> dict[str, object]:
    """Runs in a container: what the dashboard shows and does for it, with no token and with its own."""
    out: dict[str, object] = {}
    for label, suffix in (("no token", ""), ("own token", f"?token={os.environ['SHOAL_CONTAINER_TOKEN']}")):
        status, body = _request("GET", f"/dashboard/containers{suffix}", token="-")
        out[label] = [status, victim_container.encode() in body, b"Log in" in body]
    status, _ = _request("POST", f"/dashboard/containers/{victim_container}/stop", b"form_key=x", token="-")
    out["stop"] = status
    return out


@attacker.function(memory=(64, 256))
def fill_memory_and_tmp(held_mib: int, written_mib: int) -> int:
    """Runs in a container: ``held_mib`` MiB held in memory, ``written_mib`` MiB written to /tmp."""
    held = bytearray(held_mib << 20)
    held[:: 1 << 12] = b"x" * len(held[:: 1 << 12])  # touched: resident, not just reserved
    with open("/tmp/filler", "wb") as f:
        for _ in range(written_mib):
            f.write(b"x" * (1 << 20))
    return len(held) >> 20


siblings = shoal.App("tests-siblings")  # two functions of one app and layout: containers of one fork server
SIBLING_SECRET = "sibling-tmp-5500-0004"


@siblings.function(secrets=[shoal.Secret.from_dict({"SIBLING_KEY": SIBLING_SECRET})])
def hold_a_secret(ready: str, release: str) -> str:
    """Runs in a container: a secret in its /tmp and environment, held until ``release`` exists; its init's
    command line (a forked container's init is the fork server's interpreter)."""
    import time

    with open("/tmp/secret.txt", "w") as f:
        f.write(SIBLING_SECRET)
    open(ready, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    with open("/proc/1/cmdline", "rb") as f:
        return f.read().decode(errors="replace")


@siblings.function()
def look_for_siblings(ready: str, release: str) -> dict[str, object]:
    """Runs in a container while a sibling holds a secret: what of it this one can see."""
    import time

    deadline = time.monotonic() + 60
    while not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    found: list[str] = []
    for pid in pids:
        for what in ("environ", "cmdline", "root/tmp/secret.txt"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as f:
                    if SIBLING_SECRET.encode() in f.read():
                        found.append(f"{pid}/{what}")
            except OSError:
                pass
    with open("/proc/1/cmdline", "rb") as f:
        init = f.read().decode(errors="replace")
    out = {
        "ready": os.path.exists(ready),
        "pids": pids,
        "found": found,
        "init": init,
        "own tmp": sorted(os.listdir("/tmp")),
        "env": SIBLING_SECRET in os.environ.values(),
    }
    open(release, "w").close()
    return out
