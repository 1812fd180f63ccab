"""The public surface and user-input validation (no server needed)."""

from __future__ import annotations

import pickle

import pytest

import shoal
from shoal.exception import InvalidError, SerializationError
from shoal.retries import Retries, parse_retries
from shoal.serialization import rebuild_failure, serialize_args, serialize_failure


def test_public_names_are_pinned():
    assert sorted(shoal.__all__) == sorted([
        "App", "CallGraphNode", "Cls", "Cron", "Dict", "Function", "FunctionCall", "Image", "Obj", "Period", "Queue",
        "Retries",
        "Secret", "Volume", "__version__",
        "batched", "concurrent", "current_function_call_id", "current_input_id", "enable_output", "enter",
        "exception", "exit", "is_local", "method", "parameter",
        "asgi_app", "fastapi_endpoint", "web_endpoint", "web_server", "wsgi_app",
    ])  # fmt: skip


@pytest.mark.parametrize(
    "kwargs",
    [{"max_retries": -1}, {"max_retries": 11}, {"max_retries": 1, "backoff_coefficient": 0.5},
     {"max_retries": 1, "initial_delay": 61}, {"max_retries": 1, "max_delay": 0.5}],
)  # fmt: skip
def test_retries_out_of_range_are_rejected(kwargs):  # noqa: ANN001
    with pytest.raises(InvalidError):
        Retries(**kwargs)


def test_retry_delays_grow_and_cap():
    policy = Retries(max_retries=4, backoff_coefficient=3.0, initial_delay=10.0, max_delay=60.0).to_policy()
    assert [policy.delay_before_retry(n) for n in range(1, 6)] == [10.0, 30.0, 60.0, 60.0, None]


def test_integer_retries_mean_fixed_one_second_delays():
    policy = parse_retries(2)
    assert (policy.max_retries, policy.delay_before_retry(2), policy.delay_before_retry(3)) == (2, 1.0, None)


def test_deprecated_parameters_warn_and_map_to_new_names():
    app = shoal.App("deprecated")
    with pytest.warns(DeprecationWarning, match="max_containers"):
        f = app.function(concurrency_limit=3, serialized=True)(lambda x: x)
    assert f.options.max_containers == 3
    with pytest.warns(DeprecationWarning, match="min_containers"):
        g = app.function(keep_warm=1, name="g", serialized=True)(lambda x: x)
    assert g.options.min_containers == 1
    with pytest.warns(DeprecationWarning, match="scaledown_window"):
        h = app.function(container_idle_timeout=5, name="h", serialized=True)(lambda x: x)
    assert h.options.scaledown_window == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [({"timeout": -1}, "timeout"), ({"timeout": 10**9}, "timeout"), ({"max_containers": 0}, "max_containers"),
     ({"min_containers": 3, "max_containers": 1}, "min_containers"), ({"schedule": object()}, "Period"),
     ({"proxy": object()}, "not supported by Shoal yet"),
     ({"retries": "3"}, "retries"), ({"bogus": 1}, "unknown parameter")],
)  # fmt: skip
def test_invalid_function_options_raise_clear_errors(kwargs, message):  # noqa: ANN001
    app = shoal.App("invalid")
    with pytest.raises(InvalidError, match=message):
        app.function(**kwargs)(lambda x: x)


def test_placement_only_parameters_warn():
    app = shoal.App("placement")
    with pytest.warns(UserWarning, match="region"):
        app.function(region="us-east", serialized=True)(lambda x: x)


def test_nested_functions_need_serialized():
    app = shoal.App("nested")

    def outer():  # noqa: ANN202
        @app.function()
        def inner(x):  # noqa: ANN001, ANN202
            return x

    with pytest.raises(InvalidError, match="serialized=True"):
        outer()


def test_failures_keep_type_and_traceback_and_degrade_when_unpicklable():
    class Local(Exception):  # defined in a function: cloudpickle can still carry it by value
        pass

    try:
        raise Local("boom")
    except Local as exc:
        rebuilt = rebuild_failure(serialize_failure(exc))
    assert type(rebuilt).__name__ == "Local" and str(rebuilt) == "boom"
    assert "raise Local" in str(rebuilt.__cause__)

    class Stubborn(Exception):
        def __reduce__(self):  # noqa: ANN204
            raise TypeError("no")

    try:
        raise Stubborn("x")
    except Stubborn as exc:
        rebuilt = rebuild_failure(serialize_failure(exc))
    assert isinstance(rebuilt, shoal.exception.ExecutionError)
    assert "Stubborn" in str(rebuilt)


def test_serialize_args_names_the_bad_argument():
    import threading

    with pytest.raises(SerializationError, match="keyword argument 'lock'"):
        serialize_args((1,), {"lock": threading.Lock()}, "f")
    assert pickle.loads(serialize_args((1,), {"a": 2}, "f")) == ((1,), {"a": 2})


def test_cls_with_options_gpu_warns_like_gpu_on_the_decorator(monkeypatch):  # noqa: ANN001
    import shutil
    import warnings

    import shoal

    monkeypatch.setattr(shutil, "which", lambda name: None)  # no nvidia-smi: no GPU here
    app = shoal.App("gpu-variants")

    @app.cls(serialized=True)
    class Model:
        @shoal.method()
        def predict(self, x: int) -> int:
            return x

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Model.with_options(gpu="A100")
    assert any("gpu='A100'" in str(w.message) for w in caught)


def test_importing_shoal_needs_only_the_container_runtime_packages():
    # An image's environment has Shoal, cloudpickle and msgpack only: `import shoal` must need nothing else.
    import subprocess
    import sys

    extras = ("croniter", "dateutil", "click", "rich", "starlette")
    code = f"import sys, shoal; print(sorted(m for m in {extras!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_control_plane_imports_no_pickling_code():
    # The server treats payloads as opaque bytes (their framing is protocol.payloads): its modules do not even
    # import cloudpickle or shoal.serialization, so no route can reach an unpickle by mistake.
    import subprocess
    import sys

    code = ("import sys, shoal.server.main, shoal.server.control, shoal.server.routes, shoal.backends.local; "
            "print(sorted(m for m in ('cloudpickle', 'shoal.serialization') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_every_setting_is_declared_once_and_documented():
    import re
    from pathlib import Path

    from shoal.config import VARIABLES

    root = Path(__file__).resolve().parents[2]
    declared = {v.name for v in VARIABLES}
    read_elsewhere = [
        f"{path.relative_to(root)}: {name}"
        for path in (root / "src" / "shoal").rglob("*.py") if path.name != "config.py"
        for name in re.findall(r"environ(?:\.get\(|\[)\"(SHOAL_\w+)", path.read_text())
    ]  # fmt: skip
    assert read_elsewhere == [], "read SHOAL_* settings through shoal.config, not os.environ"
    readme = (root / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"\| `(SHOAL_\w+)` \|", table))
    assert documented == {v.name for v in VARIABLES if v.audience == "user"}
    assert documented <= declared


def test_the_cli_offers_every_backend_kind_the_registry_has():
    from shoal.backends import KINDS
    from shoal.cli.manage import BACKENDS

    assert sorted(BACKENDS) == sorted(KINDS)


def test_backends_import_nothing_of_the_server_and_the_store_parts_nothing_of_the_store():
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src" / "shoal"
    imports = re.compile(r"^\s*from (\.+[\w.]*|shoal[\w.]*) import", re.MULTILINE)
    for path in (src / "backends").glob("*.py"):
        assert not [m for m in imports.findall(path.read_text()) if m.startswith(("..server", "shoal.server"))], path
    for path in (src / "server" / "store").glob("*.py"):
        if path.name not in ("__init__.py", "sqlite.py", "postgres.py"):  # the stores themselves, and the package
            assert not [m for m in imports.findall(path.read_text()) if m in (".sql", ".sqlite", ".postgres")], path
    for path in (src / "server" / "core").glob("*.py"):  # the decisions: pure, no I/O of the plane's
        found = imports.findall(path.read_text())
        assert not [m for m in found if m.startswith(("..store", "..control", "...backends", "..routes"))], path
