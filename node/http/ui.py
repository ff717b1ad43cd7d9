"""GET /ui: the dashboard, a static page served by every node from its package data.

The page (node/http/ui/) is one HTML file, a vanilla JavaScript app and a style sheet, plus
uPlot's built file for the live charts (vendored with its licence; see its README). Nothing is
fetched from elsewhere: the page renders from the node's own API, asked with the token the user
entered in it, so these files need no credential themselves. The files are read once, at
start-up; the answers forbid framing and sniffing, and the content security policy lets the
page load and call nothing but this node.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

UI_PATH = "/ui"
# What the page is made of: the name it is served under, its file in the package, its type.
ASSETS = {
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "style.css": ("style.css", "text/css; charset=utf-8"),
    "uPlot.iife.min.js": ("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "uPlot.min.css": ("vendor/uPlot.min.css", "text/css; charset=utf-8"),
}
PAGE = ("index.html", "text/html; charset=utf-8")
SECURITY_HEADERS = {
    # The charts set element styles from script, which style-src must allow.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # A node upgraded in place serves its new page at once.
    "Cache-Control": "no-cache",
}


def _read(path: str) -> bytes:
    return resources.files("node.http").joinpath("ui", path).read_bytes()


class UiRoutes:
    def __init__(self) -> None:
        self._page = _read(PAGE[0])
        self._assets = {name: (_read(path), kind) for name, (path, kind) in ASSETS.items()}

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_route("GET", UI_PATH, self.page)
        router.add_route("GET", f"{UI_PATH}/{{file}}", self.asset)

    async def page(self, request: web.Request) -> web.Response:
        return _answer(self._page, PAGE[1])

    async def asset(self, request: web.Request) -> web.Response:
        found = self._assets.get(request.match_info["file"])
        if found is None:
            raise web.HTTPNotFound(text="no such file in the dashboard")
        return _answer(*found)


def _answer(body: bytes, content_type: str) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": content_type, **SECURITY_HEADERS})
