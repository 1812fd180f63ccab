"""Modal's script mode, unchanged: run with `shoal python tests/modal_programs/script_mode.py 5`."""

import sys

import modal

app = modal.App("modal-script-mode")


@app.function()
def square(x: int) -> int:
    return x * x


if __name__ == "__main__":
    n = int(sys.argv[1])
    with modal.enable_output():
        with app.run():
            print("SQUARES", list(square.map(range(n))))
