"""Loading the configuration: find the file, parse it, apply the environment, resolve secrets.

Every error names the key and where its value came from (the file or an environment variable).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from edged.config.settings import Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 on Jetson
    import tomli as tomllib

DEFAULT_SEARCH = (Path("edged.toml"), Path("/etc/edged/edged.toml"))
ENV_PREFIX = "EDGED_"
MQTT_PASSWORD_CREDENTIAL = "mqtt_password"
# Section -> the systemd credential (LoadCredential=NAME:FILE) that holds its broker password.
BROKER_CREDENTIALS = {"mqtt": MQTT_PASSWORD_CREDENTIAL, "upstream": "upstream_password", "teacher": "teacher_password"}
WEB_TOKEN_CREDENTIAL = "web_token"  # LoadCredential=web_token:/etc/edged/web_token
MIN_WEB_TOKEN_CHARS = 12


class ConfigError(Exception):
    """A configuration problem; the message is meant for the operator as it is."""


@dataclass
class LoadedConfig:
    settings: Settings
    path: Path | None  # the TOML file used, or None when running on embedded defaults


def find_config(explicit: Path | None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"{explicit}: config file not found")
        return explicit
    for candidate in DEFAULT_SEARCH:
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


def _origin(loc: tuple[Any, ...], data: dict[str, Any], path: Path | None) -> str:
    """Where the value at ``loc`` came from: an environment variable, the file, or a default."""
    keys = [part for part in loc if isinstance(part, str)]
    for depth in range(len(keys), 0, -1):
        name = _env_name(tuple(keys[:depth]))
        for var in os.environ:
            if var.upper() == name or var.upper().startswith(name + "__"):
                return f"environment variable {var}"
    node: Any = data
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return f"{path}" if path else "built-in defaults"
        node = node[key]
    return str(path) if path else "built-in defaults"


def _key_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) == 1:
        return parts[0]
    index = "".join(f"[{p}]" for p in parts[2:])
    return f"[{parts[0]}] {parts[1]}{index}"


def _format_errors(exc: ValidationError, data: dict[str, Any], path: Path | None) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        origin = _origin(loc, data, path)
        if err["type"] == "extra_forbidden":
            lines.append(f"{origin}: unknown key {_key_name(loc)}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{origin}: {_key_name(loc)}: {msg}")
    return "\n".join(lines)


def _check_unknown_env(known_sections: set[str]) -> None:
    for name in os.environ:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX):
            section = upper[len(ENV_PREFIX):].split("__", 1)[0].lower()
            if section not in known_sections:
                raise ConfigError(f"environment variable {name}: unknown key {section!r}")


def _check_env_json() -> None:
    """List values in the environment must be JSON; say so plainly instead of a parser traceback."""
    for section_name, section_field in Settings.model_fields.items():
        section_model = section_field.annotation
        for key, field in getattr(section_model, "model_fields", {}).items():
            if getattr(field.annotation, "__origin__", None) is not list:
                continue
            name = _env_name((section_name, key))
            value = next((v for k, v in os.environ.items() if k.upper() == name), None)
            if value is None:
                continue
            try:
                json.loads(value)
            except ValueError:
                raise ConfigError(
                    f"environment variable {name}: [{section_name}] {key}: not valid JSON;"
                    f" write lists as JSON, e.g. {name}='[\"a\", \"b\"]'"
                ) from None


def _resolve_secrets(settings: Settings, path: Path | None) -> None:
    for section_name, credential in BROKER_CREDENTIALS.items():
        broker = getattr(settings, section_name)
        if broker.password is not None:
            continue
        secret_file = broker.password_file
        origin = _origin((section_name, "password_file"), {}, path)
        if secret_file is None:
            cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
            if cred_dir and (Path(cred_dir) / credential).is_file():
                secret_file = Path(cred_dir) / credential
                origin = f"systemd credential {credential}"
            else:
                continue
        try:
            broker.password = SecretStr(secret_file.read_text().rstrip("\r\n"))
        except OSError as exc:
            raise ConfigError(
                f"{origin}: [{section_name}] password_file: cannot read {secret_file}: {exc.strerror}"
            ) from None


def _resolve_web_token(settings: Settings, path: Path | None) -> None:
    """[web] token from token_file, else from the systemd credential web_token. Without either the
    web server generates one in the state directory at start (see edged.web.auth)."""
    web = settings.web
    if web.token is not None:
        return
    secret_file, origin = web.token_file, _origin(("web", "token_file"), {}, path)
    if secret_file is None:
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if not (cred_dir and (Path(cred_dir) / WEB_TOKEN_CREDENTIAL).is_file()):
            return
        secret_file, origin = Path(cred_dir) / WEB_TOKEN_CREDENTIAL, f"systemd credential {WEB_TOKEN_CREDENTIAL}"
    try:
        token = secret_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{origin}: [web] token_file: cannot read {secret_file}: {exc.strerror}") from None
    if len(token) < MIN_WEB_TOKEN_CHARS:
        raise ConfigError(
            f"{origin}: [web] token_file: the token in {secret_file} is shorter than {MIN_WEB_TOKEN_CHARS} characters"
        )
    web.token = SecretStr(token)


def load_config(explicit: Path | None = None) -> LoadedConfig:
    """Find, read and validate the configuration. Raises ConfigError with operator-ready text."""
    path = find_config(explicit)
    data = _read_toml(path) if path else {}
    _check_unknown_env(set(Settings.model_fields))
    _check_env_json()
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, data, path)) from None
    except SettingsError as exc:  # an environment value pydantic-settings could not even parse
        raise ConfigError(f"environment: {exc}") from None
    _resolve_secrets(settings, path)
    _resolve_web_token(settings, path)
    return LoadedConfig(settings=settings, path=path)


def effective_config(settings: Settings) -> dict[str, Any]:
    """The configuration as plain TOML-able data, secrets redacted, unset keys left out."""
    out: dict[str, Any] = {}
    for section_name in type(settings).model_fields:
        section = getattr(settings, section_name)
        values = {}
        for key in type(section).model_fields:
            value = getattr(section, key)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = "<redacted>"
            elif isinstance(value, Path):
                value = str(value)
            values[key] = value
        out[section_name] = values
    return out
