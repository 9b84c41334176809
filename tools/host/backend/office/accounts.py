"""Accounts: argon2id password hashes, login with a rate limit, sessions (a random cookie,
only its SHA-256 stored) with a CSRF token each, and `tools/backend users`."""

import hashlib
import re
import secrets
import time

from tools.host.backend.errors import CommandError

# argon2id as RFC 9106's second recommended option (memory-hard, for when 2 GiB per hash is
# too much): 64 MiB, 3 passes, 4 lanes. A login costs about 50 ms of one core here.
ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_PARALLELISM = 4
MIN_PASSWORD_CHARS = 10

# At most this many failed logins in LOGIN_WINDOW_S for one name (anyone guessing one
# account's password), and for one address (anyone trying many names); then every login
# for that name or from that address is refused until the window has passed.
LOGIN_WINDOW_S = 15 * 60
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_ADDRESS = 20

SESSION_IDLE_S = 30 * 60  # a session unused this long is over
SESSION_MAX_S = 12 * 3600  # and any session after a working day
ROLES = ("operator", "merchant")
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def hasher():
    from argon2 import PasswordHasher, Type

    return PasswordHasher(
        time_cost=ARGON2_TIME_COST,
        memory_cost=ARGON2_MEMORY_KIB,
        parallelism=ARGON2_PARALLELISM,
        type=Type.ID,
    )


def hash_password(password):
    if len(password) < MIN_PASSWORD_CHARS:
        raise CommandError("a password has at least %d characters" % MIN_PASSWORD_CHARS)
    return hasher().hash(password)


# A hash to check against when the name is unknown, so that an unknown name takes as long
# to refuse as a wrong password (the time says nothing about which names exist).
_DUMMY = []


def _dummy_hash():
    if not _DUMMY:
        _DUMMY.append(hasher().hash(secrets.token_hex(16)))
    return _DUMMY[0]


class LoginRefused(Exception):
    """A login that did not succeed; the message is what the person at the browser sees
    (the same for an unknown name, a wrong password and a disabled account)."""


WRONG_LOGIN = "wrong name or password"
TOO_MANY = "too many failed logins: try again in 15 minutes"


def digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Users, logins and sessions over an OfficeStore."""

    def __init__(self, store, clock=time.time):
        self.store = store
        self.clock = clock

    def login(self, name, password, address):
        """A new session for a right name and password: (cookie token, csrf token).
        Raises LoginRefused otherwise, and after too many failures whatever is given."""
        from argon2.exceptions import InvalidHashError, VerificationError

        now = int(self.clock())
        by_name, by_address = self.store.failures_since(name, address, now - LOGIN_WINDOW_S)
        if by_name >= MAX_FAILURES_PER_NAME or by_address >= MAX_FAILURES_PER_ADDRESS:
            raise LoginRefused(TOO_MANY)
        user = self.store.user(name)
        try:
            hasher().verify(user["password_hash"] if user else _dummy_hash(), password)
            ok = user is not None and not user["disabled"]
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            self.store.record_failure(name, address, now, now - LOGIN_WINDOW_S)
            raise LoginRefused(WRONG_LOGIN)
        if hasher().check_needs_rehash(user["password_hash"]):
            self.store.set_user(name, password_hash=hash_password(password))
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        self.store.start_session(digest(token), name, csrf, now, now - SESSION_IDLE_S)
        return token, csrf

    def session(self, token):
        """The live session of a cookie, or None (unknown, expired, or its user disabled)."""
        if not token or len(token) > 100:
            return None
        key = digest(token)
        session = self.store.session(key)
        now = int(self.clock())
        if session is None:
            return None
        if (
            session["disabled"]
            or now - session["seen"] > SESSION_IDLE_S
            or now - session["started"] > SESSION_MAX_S
        ):
            self.store.end_session(key)
            return None
        if now - session["seen"] >= 60:  # a write a minute at most, not one per page
            self.store.touch_session(key, now)
        session["digest"] = key
        return session

    def logout(self, token):
        if token:
            self.store.end_session(digest(token))


# --- tools/backend users -----------------------------------------------------------------


def check_user_name(name):
    if not _NAME.match(name or ""):
        raise CommandError(
            "a user name is 1 to 64 letters, digits or _.@- (not %r)" % (name or "")[:70]
        )


def read_password(args):
    """The password from --password-file (its first line), or asked for twice."""
    if args.password_file:
        try:
            with open(args.password_file) as source:
                password = source.readline().rstrip("\r\n")
        except OSError as exc:
            raise CommandError(
                "cannot read %s: %s" % (args.password_file, exc.strerror or exc)
            ) from None
    else:
        import getpass

        password = getpass.getpass("Password for %s: " % args.name)
        if getpass.getpass("Again: ") != password:
            raise CommandError("the two passwords differ: nothing changed")
    return hash_password(password)


def users_command(args):
    from tools.host.backend.ledger import LedgerDB
    from tools.host.backend.office.store import OfficeStore

    if args.action != "list":
        check_user_name(args.name)
    if args.action == "add":
        if args.role not in ROLES:
            raise CommandError("--role is operator or merchant")
        if (args.role == "merchant") != bool(args.merchant):
            raise CommandError(
                "a merchant account needs --merchant MERCHANT_ID; an operator has none"
            )
    password_hash = read_password(args) if args.action in ("add", "reset") else None
    db = LedgerDB(args.db, mode="write")  # a mistyped --db must not make a new ledger
    try:
        store = OfficeStore(db)
        if args.action == "add":
            if args.role == "merchant" and args.merchant not in store.merchants():
                known = ", ".join(store.merchants()) or "none"
                raise CommandError(
                    "no merchant ID %s in %s (it has %s)" % (args.merchant, args.db, known)
                )
            if not store.add_user(args.name, args.role, args.merchant, password_hash):
                raise CommandError("there is a user %s already (reset or disable it)" % args.name)
            detail = "%s %s" % (args.role, args.merchant or "")
        elif args.action == "list":
            for user in store.users():
                print(
                    "%-20s %-9s %-16s %s"
                    % (
                        user["name"],
                        user["role"],
                        user["merchant_id"] or "-",
                        "disabled" if user["disabled"] else "active",
                    )
                )
            return 0
        else:
            changed = store.set_user(
                args.name,
                password_hash=password_hash,
                disabled=True if args.action == "disable" else None,
            )
            if not changed:
                raise CommandError("no user %s" % args.name)
            detail = ""
        store.audit("cli", "user %s" % args.action, ("%s %s" % (args.name, detail)).strip())
    finally:
        db.close()
    print(
        {
            "add": "user %s added",
            "reset": "password of %s changed; their sessions ended",
            "disable": "user %s disabled; their sessions ended",
        }[args.action]
        % args.name
    )
    return 0


def add_users_parser(commands):
    users = commands.add_parser("users", help="back-office accounts: add, list, disable, reset")
    actions = users.add_subparsers(dest="action", required=True)
    for action, text in (
        ("add", "add an operator or a merchant's account"),
        ("list", "list the accounts"),
        ("disable", "disable an account and end its sessions"),
        ("reset", "set a new password and end the account's sessions"),
    ):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("--db", required=True)
        if action == "list":
            continue
        sub.add_argument("name", help="the login name")
        if action == "add":
            sub.add_argument("--role", choices=ROLES, required=True)
            sub.add_argument("--merchant", help="the merchant ID a merchant account sees")
        if action in ("add", "reset"):
            sub.add_argument(
                "--password-file", help="read the password from this file's first line"
            )
    return users
