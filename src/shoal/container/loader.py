"""Load the user's function inside a container: from a source bundle (import by module + name) or a pickle."""

from __future__ import annotations

import importlib
import io
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle

from .. import serialization
from ..config import container_env, settings
from ..protocol.specs import FunctionSpec


def extract_bundle(blob_id: str, fetch: Callable[[str], bytes]) -> Path:
    """Unpack a source bundle once into ``$SHOAL_BUNDLE_DIR/<sha256>`` (atomic).

    A sandboxed container unpacks into its private /tmp (no container can plant code for another); an
    unsandboxed one shares ``$SHOAL_HOME/bundles``.
    """
    env = container_env()
    root = env.bundle_dir if env is not None and env.bundle_dir is not None else settings().home / "bundles"
    target = root / blob_id
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root))
    with zipfile.ZipFile(io.BytesIO(fetch(blob_id))) as zf:
        zf.extractall(tmp)
    try:
        os.rename(tmp, target)
    except OSError:  # another container won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_function(spec: FunctionSpec, pickled: bytes | None, fetch: Callable[[str], bytes]) -> Callable[..., Any]:
    """Return the raw user function described by ``spec``."""
    if pickled is not None:
        obj = cloudpickle.loads(pickled)
    else:
        assert spec.bundle is not None and spec.module is not None
        bundle_dir = extract_bundle(spec.bundle, fetch)
        sys.path.insert(0, str(bundle_dir))
        if spec.source_root:  # tracebacks name the files where the user has them, not the unpacked bundle
            serialization.show_paths_as(str(bundle_dir), spec.source_root)
        obj = importlib.import_module(spec.module)
        for part in spec.qualname.split("."):
            obj = getattr(obj, part)
    raw = getattr(obj, "raw_f", None)
    return raw if raw is not None else obj  # type: ignore[no-any-return]
