"""The back office: web pages for the food court's operator and its merchants, served by
the back end under /office, one module per concern:

store.py           the office's tables (one place, for the storage layer's migrations)
                   and every query it makes
accounts.py        argon2id passwords, login rate limit, sessions; tools/backend users
web.py             the Office, and the dependencies every route takes (session, role,
                   merchant in view, CSRF)
login_pages.py     login and logout
merchant_pages.py  a merchant's figures, sales, Z settlements, charts and downloads
operator_pages.py  the operator's: merchants, fleet, blacklist, users, commission,
                   accounts, audit log, payout files
figures.py         a merchant's period counted from the sealed records
statements.py      commission and statements (CSV, PDF)
payouts.py         payout CSV, SEPA pain.001, IBAN checks
charts.py          bar charts as SVG
"""

import os

from tools.host.backend.office.web import PREFIX, LoginNeeded, Office, security_headers

_STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
PUBLIC_PATHS = (PREFIX + "/login", PREFIX + "/static/office.css")


def routes(app):
    """[(method, path)] of every back-office route of the app, read from the app itself (the
    access tests walk this list, so a new route cannot be left out of them)."""
    out = []

    def walk(entries):
        for route in entries:
            if hasattr(route, "effective_route_contexts"):  # an included router (FastAPI)
                walk(route.effective_route_contexts())
                continue
            path = getattr(route, "path", "")
            if path == PREFIX or path.startswith(PREFIX + "/"):
                for method in sorted(set(route.methods) - {"HEAD"}):
                    out.append((method, path))

    walk(app.routes)
    return sorted(set(out))


def mount(app, ledger, token_key_file=None, clock=None):
    """Serve the back office under /office of the back end's app (not in its OpenAPI
    schema: the schema is the terminals' API)."""
    import time

    from fastapi import Response
    from fastapi.responses import RedirectResponse

    from tools.host.backend.office import login_pages, merchant_pages, operator_pages

    app.state.office = Office(ledger, token_key_file, clock or time.time)
    for module in (login_pages, merchant_pages, operator_pages):
        app.include_router(module.router, prefix=PREFIX, include_in_schema=False)

    with open(os.path.join(_STATIC, "office.css"), "rb") as source:
        stylesheet = source.read()

    @app.get(PREFIX + "/static/office.css", include_in_schema=False)
    def office_css():
        return Response(
            stylesheet, media_type="text/css", headers={"Cache-Control": "max-age=3600"}
        )

    from fastapi.exception_handlers import http_exception_handler
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def office_error(request, exc):
        """In the office, a refusal is a page a person can read (the same words for a
        page that does not exist and one that is not theirs); elsewhere, FastAPI's JSON."""
        path = request.url.path
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            return await http_exception_handler(request, exc)
        office = app.state.office
        response = office.templates.TemplateResponse(
            request,
            "error.html",
            {"request": request, "who": None, "status": exc.status_code, "detail": exc.detail},
            status_code=exc.status_code,
        )
        return security_headers(response)

    @app.exception_handler(LoginNeeded)
    async def login_needed(request, exc):
        return security_headers(RedirectResponse(PREFIX + "/login", status_code=303))

    app.add_middleware(OfficeHeaders)
    return app.state.office


class OfficeHeaders:
    """The office's security headers on every answer under /office, as plain ASGI: the
    terminals' requests pass straight through. (Starlette's @app.middleware("http") ran
    every terminal batch through a task and memory streams of its own: 0.4 ms of the event
    loop's CPU a request, about as much as the rest of the route.)"""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import MutableHeaders

        static = path.startswith(PREFIX + "/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                security_headers(_HeadersOf(MutableHeaders(scope=message)), static=static)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _HeadersOf:
    """What security_headers() sets headers on: here an ASGI message's."""

    def __init__(self, headers):
        self.headers = headers
