"""The dashboard: static pages that list jobs and show one job's results, working only through
the same token-protected API as curl. The pages hold no data themselves; the chart library is
vendored under static/vendor so the page needs no internet and no build step."""

from __future__ import annotations

import uuid
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

router = APIRouter(tags=["dashboard"])
STATIC = Path(__file__).resolve().parent.parent / "static"
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css"}
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
}


@lru_cache(maxsize=4)
def _page(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard() -> HTMLResponse:
    return HTMLResponse(_page("dashboard.html"), headers=HEADERS)


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def docs() -> HTMLResponse:
    """The API reference (Swagger UI, vendored) for /openapi.json. Both are served without a
    token: the schema describes the routes and holds no data, and every route it describes still
    needs the token (Swagger UI's Authorize button takes it)."""
    return HTMLResponse(_page("docs.html"), headers=HEADERS)


@router.get("/dashboard/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
def job_page(job_id: uuid.UUID) -> HTMLResponse:
    """One job: the page reads the job id from its own path and everything else from the API."""
    return HTMLResponse(_page("job.html"), headers=HEADERS)


@router.get("/dashboard/static/{path:path}", include_in_schema=False)
def asset(path: str) -> FileResponse:
    """A script or stylesheet from static/ (the shared page code and the vendored chart library)."""
    file = (STATIC / path).resolve()
    if not file.is_relative_to(STATIC) or file.suffix not in ASSET_TYPES or not file.is_file():
        raise HTTPException(404, detail="no such file")
    return FileResponse(
        file,
        media_type=ASSET_TYPES[file.suffix],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
