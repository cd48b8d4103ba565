"""A request as the routes see it, a response as they return it, and the headers every response gets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_BODY_BYTES = 256 * 1024

# No inline script or style can run: log text that slipped through escaping still could not execute.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    target: str  # path and query as sent
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    client: str = ""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path or "/"

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, the first value of each."""
        return {k: v[0] for k, v in parse_qs(urlsplit(self.target).query, keep_blank_values=True).items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def form(self) -> dict[str, str]:
        ctype = (self.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise BadRequest("expected a form (application/x-www-form-urlencoded)", 415)
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the form is not UTF-8") from None
        return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}

    def json(self) -> dict[str, Any]:
        ctype = (self.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise BadRequest("expected Content-Type: application/json", 415)
        try:
            doc = json.loads(self.body)
        except ValueError as exc:
            raise BadRequest(f"invalid JSON: {exc}") from None
        except RecursionError:  # nested deeper than the interpreter's stack: refused like any bad JSON
            raise BadRequest("invalid JSON: nested too deeply") from None
        if not isinstance(doc, dict):
            raise BadRequest("expected a JSON object")
        return doc


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    cache: str = "no-store"


def html(body: str, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, body.encode("utf-8"), headers=headers or [])


def as_json(doc: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(doc, ensure_ascii=False, indent=1, default=str).encode("utf-8")
    return Response(status, body, "application/json; charset=utf-8", headers=headers or [])


def json_error(message: str, status: int, headers: list[tuple[str, str]] | None = None) -> Response:
    return as_json({"error": message}, status, headers)


def redirect(location: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(303, b"", headers=[("Location", location)] + (headers or []))


def safe_next(value: str | None) -> str:
    """A local path to go back to after logging in; anything else (another site) becomes "/"."""
    value = value or "/"
    if not value.startswith("/") or value.startswith("//") or "\\" in value or any(ord(c) < 33 for c in value):
        return "/"
    return value
