"""What every back-office page shares: the Office (store, accounts, templates, settings),
the session a page is seen in, and the rules no route can forget: no session, a redirect
to the login page; the wrong role or another merchant's identifier, 404 with nothing in
it; a form without its session's CSRF token, 403 and nothing changed."""

import hmac
import os
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.responses import RedirectResponse

from tools.host.backend.office.accounts import Accounts
from tools.host.backend.office.figures import local
from tools.host.backend.office.store import OfficeStore
from tools.host.backend.reports import money

SESSION_COOKIE = "__Host-onetill_session"  # __Host-: Secure, Path=/, no Domain, or no cookie
LOGIN_COOKIE = "__Host-onetill_login"  # the login form's own CSRF token (before a session)
PREFIX = "/office"
_HERE = os.path.dirname(os.path.abspath(__file__))
NOT_FOUND = "not found"


class LoginNeeded(Exception):
    """No live session: the answer is a redirect to the login page, whatever was asked."""


class Office:
    """The back office's state, made once when the app starts."""

    def __init__(self, ledger, token_key_file=None, clock=time.time):
        from fastapi.templating import Jinja2Templates

        self.ledger = ledger
        self.store = OfficeStore(ledger)
        self.accounts = Accounts(self.store, clock)
        self.clock = clock
        self.token_key_file = token_key_file
        self.templates = Jinja2Templates(directory=os.path.join(_HERE, "templates"))
        env = self.templates.env
        env.filters["money"] = money
        env.filters["localtime"] = self.local_time
        env.globals["prefix"] = PREFIX

    @property
    def utc_offset_min(self):
        try:
            return int(self.store.settings().get("utc_offset_min", "0"))
        except ValueError:
            return 0

    def local_time(self, unix_seconds):
        if not unix_seconds:
            return "clock not set"
        offset = self.utc_offset_min
        text = local(unix_seconds, offset).strftime("%Y-%m-%d %H:%M:%S")
        if not offset:
            return text + " UTC"
        hours, minutes = divmod(abs(offset), 60)
        return "%s UTC%s%02d:%02d" % (text, "-" if offset < 0 else "+", hours, minutes)

    def page(self, request, name, who, status=200, **values):
        values.update(request=request, who=who)
        return self.templates.TemplateResponse(request, name, values, status_code=status)


def office_of(request: Request) -> Office:
    return request.app.state.office


OfficeDep = Annotated[Office, Depends(office_of)]


def viewer(request: Request, office: OfficeDep) -> dict:
    """The session of a page (a dependency of every route but login and the stylesheet)."""
    session = office.accounts.session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginNeeded()
    return session


Viewer = Annotated[dict, Depends(viewer)]


def operator(who: Viewer) -> dict:
    """An operator's session; anyone else is told there is no such page."""
    if who["role"] != "operator":
        raise HTTPException(404, NOT_FOUND)
    return who


Operator = Annotated[dict, Depends(operator)]


def merchant_in_view(merchant_id: str, who: Viewer, office: OfficeDep) -> dict:
    """The merchant a page is about: any for an operator, only its own for a merchant (any
    other, existing or not, is 404 alike)."""
    if who["role"] != "operator" and who["merchant_id"] != merchant_id:
        raise HTTPException(404, NOT_FOUND)
    merchants = office.store.merchants()
    if merchant_id not in merchants:
        raise HTTPException(404, NOT_FOUND)
    entry = dict(merchants[merchant_id])
    entry["merchant_id"] = merchant_id
    return entry


MerchantInView = Annotated[dict, Depends(merchant_in_view)]


async def posted(request: Request, who: Viewer) -> dict:
    """A form sent in a session, with that session's CSRF token (every POST depends on
    this): the form's fields, or 403 with nothing changed."""
    form = await request.form()
    token = form.get("csrf", "")
    if not isinstance(token, str) or not hmac.compare_digest(token, who["csrf"]):
        raise HTTPException(403, "the form is out of date: load the page again")
    return {key: value for key, value in form.items() if isinstance(value, str)}


Posted = Annotated[dict, Depends(posted)]


def see_other(path):
    return RedirectResponse(PREFIX + path, status_code=303)


def security_headers(response, static=False):
    """What every office answer carries: no script from anywhere, no framing, no caching
    of a page with money on it."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if not static:
        response.headers["Cache-Control"] = "no-store"
    return response
