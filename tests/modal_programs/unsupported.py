"""Uses a Modal API Shoal does not have: the run fails at that line with a clear message."""

import modal
from modal import Sandbox

app = modal.App("modal-unsupported")


@app.local_entrypoint()
def main() -> None:
    print("BEFORE")
    Sandbox.create("echo", "hi", app=app)
