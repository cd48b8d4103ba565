"""Who may change things: one shared token, sessions for the browser, CSRF tokens for its forms.

Reading (pages, /api GETs, /healthz, /metrics) needs nothing: what the page shows is reachable by
whoever reaches ``[web] listen``, which defaults to this box only. Every change (an incident report,
a label correction) needs the token, always, on loopback too: the browser on the box is not the only
local client, and a page from anywhere can make a browser send a form to 127.0.0.1.

- The token comes from ``[web] token`` / ``token_file`` / the systemd credential ``web_token``; with
  none of those, edged generates one at first start into ``web_token`` in the state directory
  (mode 0600) and the banner says where it is. If that file can't be written, changes are refused
  with a message saying how to set a token.
- Browser: ``POST /login`` with the token starts a session: an HttpOnly, SameSite=Strict cookie
  holding a random id, kept in memory (a restart logs everyone out). Each session has its own CSRF
  token, put into every form as a hidden field and compared on every POST; a POST whose Origin is
  another site is refused as well.
- JSON API: ``Authorization: Bearer <token>`` on every change, and nothing else: no cookie is
  accepted there, so a browser can never be made to send an API change on its own (no CSRF).
- Failed logins are limited per client address, so the token can't be guessed by trying; the right
  token always works, so one address's wrong tries lock out nobody else behind it.
- While the page listens on loopback only, it answers only requests addressed to a loopback name
  (routes.dispatch), so a web site that makes its name resolve to 127.0.0.1 can't read it either.
- The cookie has no ``Secure`` flag: the page is plain HTTP on the plant network. Where that network
  is not trusted, put a TLS reverse proxy in front and keep ``[web] listen`` on loopback.
"""

from __future__ import annotations

import collections
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

log = logging.getLogger(__name__)

TOKEN_FILE = "web_token"
SESSION_COOKIE = "edged_session"
SESSION_S = 12 * 3600  # one shift
MAX_SESSIONS = 256
LOGIN_FAILURES_ALLOWED = 10  # per client address ...
LOGIN_FAILURE_WINDOW_S = 60.0  # ... in this many seconds
LOCKED_DELAY_S = 1.0  # every login attempt from an address over the limit waits this long
MIN_TOKEN_CHARS = 12
# Easy to read and type on a tablet: no 0/o, 1/l/i. 20 characters = 99 bits.
TOKEN_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"

HOW_TO_SET = (
    "set [web] token_file in the config (a file readable only by edged, at least 12 characters),"
    " or give the service the systemd credential web_token (LoadCredential=web_token:/etc/edged/web_token)"
)


def generate_token() -> str:
    chars = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(20))
    return "-".join(chars[i : i + 4] for i in range(0, 20, 4))


@dataclass
class TokenInfo:
    token: str | None  # None: changes are refused
    where: str  # where the operator finds (or sets) it, for the banner and the login page
    problem: str | None = None  # why there is none


def resolve_token(web, state_dir: Path) -> TokenInfo:
    """The configured token, else the generated one in ``state_dir/web_token`` (created if absent)."""
    if web.token is not None:
        if web.token_file is not None:
            where = str(web.token_file)
        elif (cred := os.environ.get("CREDENTIALS_DIRECTORY")) and (Path(cred) / "web_token").is_file():
            where = "the systemd credential web_token"
        else:
            where = "[web] token in the config"
        return TokenInfo(web.token.get_secret_value().strip(), where)
    path = Path(os.path.abspath(state_dir / TOKEN_FILE))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        return TokenInfo(None, str(path), f"could not create {path}: {exc.strerror}")
    else:
        with os.fdopen(fd, "w") as f:
            f.write(generate_token() + "\n")
        log.info("generated a web token in %s", path)
    try:
        token = path.read_text().strip()
    except OSError as exc:
        return TokenInfo(None, str(path), f"could not read {path}: {exc.strerror}")
    if len(token) < MIN_TOKEN_CHARS:
        return TokenInfo(None, str(path), f"the token in {path} is shorter than {MIN_TOKEN_CHARS} characters")
    return TokenInfo(token, str(path))


@dataclass
class Session:
    id: str
    csrf: str
    expires: float = field(default_factory=lambda: time.monotonic() + SESSION_S)


class TooManyAttempts(Exception):
    pass


class Auth:
    def __init__(self, info: TokenInfo) -> None:
        self.info = info
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.info.token is not None

    @property
    def refusal(self) -> str:
        """What to tell someone who tries a change while no token is set."""
        return f"changes are switched off because edged has no web token ({self.info.problem}); {HOW_TO_SET}"

    def token_matches(self, given: str | None) -> bool:
        if not self.enabled or not given:
            return False
        return hmac.compare_digest(given.strip().encode(), self.info.token.encode())

    def bearer_ok(self, authorization: str | None) -> bool:
        scheme, _, credentials = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(credentials)

    # -- browser sessions ------------------------------------------------------------------------
    def login(self, given: str | None, client: str) -> Session | None:
        """A new session when the token matches; None when not. Raises TooManyAttempts for a wrong
        token from an address over its limit of failures.

        The right token always works: everyone behind one proxy or NAT shares an address, and one
        person's typos (or someone's guessing) must not lock the others out. Guessing stays slow:
        every attempt from an address over its limit is answered only after ``LOCKED_DELAY_S``, and
        the web server lets one address hold only a few connections (edged.web.server)."""
        now = time.monotonic()
        with self._lock:
            failures = self._failures.get(client)
            while failures and now - failures[0] > LOGIN_FAILURE_WINDOW_S:
                failures.popleft()
            locked = bool(failures) and len(failures) >= LOGIN_FAILURES_ALLOWED
        if locked:
            time.sleep(LOCKED_DELAY_S)
        if not self.token_matches(given):
            if locked:
                raise TooManyAttempts()
            with self._lock:
                if len(self._failures) > 1000:  # many addresses: forget the quiet ones
                    self._failures = {k: v for k, v in self._failures.items() if v and now - v[-1] < 60}
                self._failures.setdefault(client, collections.deque()).append(now)
            log.warning("web login with a wrong token from %s", client)
            return None
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
        with self._lock:
            self._expire(now)
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))  # the oldest
            self._sessions[session.id] = session
        return session

    def session(self, cookie_header: str | None) -> Session | None:
        if not cookie_header:
            return None
        try:
            cookie = SimpleCookie(cookie_header)
        except CookieError:
            return None
        morsel = cookie.get(SESSION_COOKIE)
        if morsel is None:
            return None
        with self._lock:
            session = self._sessions.get(morsel.value)
            if session is not None and session.expires < time.monotonic():
                self._sessions.pop(session.id, None)
                return None
            return session

    def logout(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), session.csrf.encode())

    @staticmethod
    def cookie(session: Session | None) -> str:
        """The Set-Cookie value that starts (or, for None, ends) a session."""
        if session is None:
            return f"{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        return f"{SESSION_COOKIE}={session.id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_S}"

    def _expire(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if s.expires < now]:
            del self._sessions[sid]
