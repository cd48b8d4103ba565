"""The one parser of broker URLs: the settings validate with it, the MQTT connections connect with it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    tls: bool

    def __str__(self) -> str:
        # Safe to log: a URL with a password never parses, and we never print settings.password.
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user@]host[:port]`` or ``mqtts://...``; the port defaults to 1883 / 8883.

    Raises ValueError with a message that fits after the key's name ("[mqtt] url: ...")."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"must start with mqtt:// or mqtts://, not {parts.scheme + '://' if parts.scheme else url!r}")
    if parts.password:
        raise ValueError("must not contain a password; use password_file or a credential")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be only mqtt://[user@]host[:port] (no path, query or fragment)")
    return BrokerAddress(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[parts.scheme],
        username=unquote(parts.username) if parts.username else None,
        tls=parts.scheme == "mqtts",
    )
