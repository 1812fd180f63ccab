"""A module that imports on the client but fails in the container."""

import shoal

app = shoal.App("tests-broken")

if not shoal.is_local():
    raise RuntimeError("this module cannot be imported inside a container (on purpose)")


@app.function()
def never_runs(x: int) -> int:
    return x
