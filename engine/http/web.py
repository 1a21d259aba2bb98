"""The web board at `/`: one page and its script and style sheet, shipped in the package and
served by the app, so it works with no internet access. The page signs in with an API token and
does everything through the HTTP API."""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS: Final = "/web-assets"
"""Where the board's script and style sheet are served."""


def install(app: FastAPI) -> None:
    """Serve the board's page at `/` and its assets under `ASSETS` on `app`."""
    folder = files("flowkernel.http") / "web"
    app.mount(
        ASSETS, StaticFiles(directory=str(folder), follow_symlink=True), name="web-assets"
    )  # an editable install links the files
    page = (folder / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    def board() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
