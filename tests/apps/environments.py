"""Images, volumes and the sandbox, as a user writes them."""

from __future__ import annotations

import os

import shoal
from tests.apps import me

app = shoal.App("tests-environments")
image = shoal.Image.debian_slim().pip_install("pyjokes==0.8.3").env({"GREETING": "hello from the image"})
results = shoal.Volume.from_name("tests-results", create_if_missing=True)

with image.imports():
    import pyjokes  # only the image has it


@app.function(image=image)
def uses_image_package() -> dict:
    import importlib.util
    from importlib.metadata import version

    import shoal as runtime

    client_only = [m for m in ("psutil", "starlette", "click", "pytest") if importlib.util.find_spec(m) is not None]
    return {"version": version("pyjokes"), "joke": bool(pyjokes.get_joke()), "greeting": os.environ["GREETING"],
            "python": os.sys.executable, "client_only": client_only, "shoal": runtime.__file__}  # fmt: skip


@app.function(volumes={"/data": results}, max_containers=4)
def embed(i: int) -> int:
    with open(f"/data/{i}.out", "w") as f:
        f.write(f"embedding {i}")
    results.commit()
    return me()


@app.function(volumes={"/data": results.read_only()})
def read_back(i: int) -> tuple[str, int]:
    results.reload()
    with open(f"/data/{i}.out") as f:
        return f.read(), me()


@app.function()
def look_at_tmp(host_file: str) -> dict:
    with open("/tmp/written-inside", "w") as f:
        f.write("x")
    return {"sees_host_file": os.path.exists(host_file), "tmp": sorted(os.listdir("/tmp"))}


other_python = shoal.App("tests-other-python")


@other_python.function(image=shoal.Image.debian_slim(python_version="3.12"))
def python_version() -> str:
    import sys

    return f"{sys.version_info[0]}.{sys.version_info[1]}"
