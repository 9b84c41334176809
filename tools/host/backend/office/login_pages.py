"""Logging in and out: the login form (its own CSRF token in a cookie, as there is no
session yet), a new session on every login (a cookie set before it is never taken over:
no session fixation), and logout that ends the session on the server."""

import hmac
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from tools.host.backend.office.accounts import LoginRefused
from tools.host.backend.office.web import (
    LOGIN_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    OfficeDep,
    Posted,
    see_other,
)

router = APIRouter()
_COOKIE = {"secure": True, "httponly": True, "samesite": "strict", "path": "/"}


def home_of(session):
    if session["role"] == "operator":
        return "/operator"
    return "/merchants/%s" % session["merchant_id"]


@router.get("/login")
def login_form(request: Request, office: OfficeDep):
    # Shown even in a session: logging in as someone else ends that session first.
    return _form(request, office, "", 200)


def _form(request, office, message, status):
    token = secrets.token_urlsafe(32)
    response = office.page(request, "login.html", None, status, login_csrf=token, message=message)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, **_COOKIE)
    return response


@router.post("/login")
async def login(request: Request, office: OfficeDep):
    form = await request.form()
    name = form.get("name", "")
    password = form.get("password", "")
    token = form.get("csrf", "")
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not all(isinstance(v, str) for v in (name, password, token)):
        return _form(request, office, "fill in the form", 400)
    if not expected or not hmac.compare_digest(token, expected):
        return _form(request, office, "the form is out of date: try again", 403)
    # Whatever session this browser had ends here: the new one has a new cookie.
    office.accounts.logout(request.cookies.get(SESSION_COOKIE))
    address = request.client.host if request.client else "?"
    try:
        session_token, _ = office.accounts.login(name[:64], password[:1024], address)
    except LoginRefused as exc:
        return _form(request, office, str(exc), 401)
    session = office.accounts.session(session_token)
    response = RedirectResponse(PREFIX + home_of(session), status_code=303)
    response.set_cookie(SESSION_COOKIE, session_token, **_COOKIE)
    response.delete_cookie(LOGIN_COOKIE, **_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, form: Posted, office: OfficeDep):
    office.accounts.logout(request.cookies.get(SESSION_COOKIE))
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE, **_COOKIE)
    return response


@router.get("/")
def home(request: Request, office: OfficeDep):
    session = office.accounts.session(request.cookies.get(SESSION_COOKIE))
    return see_other(home_of(session) if session else "/login")
