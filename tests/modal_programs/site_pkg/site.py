"""A web app of the shape issue 25 item 15 tried with python-fasthtml (written with Starlette, which Shoal has):
`@modal.asgi_app`, `@modal.concurrent(max_inputs=100)`, `max_containers=1`, `add_local_file` with a path
relative to the project, a relative import, served as `shoal serve -m package.module`."""

import modal

from .helpers import greet

image = modal.Image.debian_slim().add_local_file("tests/modal_programs/site_pkg/notes.txt", "/root/notes.txt")
app = modal.App("modal-site", image=image)


@app.function(max_containers=1)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def web():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def home(request):
        with open("/root/notes.txt") as f:
            return PlainTextResponse(greet("site") + " / " + f.read().strip())

    return Starlette(routes=[Route("/", home)])
