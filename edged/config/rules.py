"""Rules that span keys or sections, checked once by ``Settings``'s own validator.

``edged config check`` and ``edged run`` load the configuration the same way (edged.config.load), so
whatever this module refuses, both refuse, with the same message, before anything starts. A rule
belongs here when one key alone cannot be judged: a password needs a user in the URL, two broker
connections need two client ids, a topic template needs the levels it names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edged.config.broker_url import parse_broker_url

# Section -> the systemd credential (LoadCredential=NAME:FILE) that holds its broker password.
BROKER_CREDENTIALS = {"mqtt": "mqtt_password", "upstream": "upstream_password", "teacher": "teacher_password"}

Problem = tuple[tuple[str, str], str]  # ((section, key), message)


def credential_file(name: str) -> Path | None:
    """The systemd credential ``name`` when the service was given it, else None."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory and (Path(directory) / name).is_file():
        return Path(directory) / name
    return None


def _password_without_user(section_name: str, broker: Any) -> Problem | None:
    if not broker.url or parse_broker_url(broker.url).username is not None:
        return None
    example = f"{broker.url.split('://')[0]}://USER@{broker.url.split('://', 1)[1]}"
    if broker.password is not None:
        key, where = "password", "is set"
    elif broker.password_file is not None:
        key, where = "password_file", "is set"
    elif credential_file(BROKER_CREDENTIALS[section_name]) is not None:
        key, where = "password", f"comes from the systemd credential {BROKER_CREDENTIALS[section_name]}"
    else:
        return None
    return (section_name, key), (
        f"a password {where} but [{section_name}] url names no user; write the user into the URL"
        f" ({example}), or remove the password"
    )


def _topic_template(upstream: Any, key: str, levels: dict[str, str]) -> Problem | None:
    template = getattr(upstream, key)
    try:
        topic = template.format(**levels)
    except (KeyError, IndexError, ValueError) as exc:
        known = ", ".join("{" + k + "}" for k in levels)
        return ("upstream", key), f"{template!r} is not a topic template ({exc!r}); it may use {known}"
    if not topic or any(c in topic for c in "+#\0"):
        return ("upstream", key), f"{template!r} gives the topic {topic!r}; a topic to publish to has no + or #"
    return None


def cross_section_problems(settings: Any) -> list[Problem]:
    """Every rule that spans keys or sections; an empty list when the settings hold together."""
    problems: list[Problem | None] = [
        _password_without_user("mqtt", settings.mqtt),
        _password_without_user("upstream", settings.upstream),
        _password_without_user("teacher", settings.teacher),
    ]
    mqtt, upstream = settings.mqtt, settings.upstream
    if mqtt.url and upstream.url and mqtt.client_id == upstream.client_id:
        problems.append((("upstream", "client_id"), (
            f"must differ from [mqtt] client_id ({mqtt.client_id!r}); two connections with one client id"
            " throw each other off the broker"
        )))
    if upstream.url and upstream.escalation:
        # Escalation replies arrive on their own persistent session (edged.publish.replies).
        replies = upstream.response_client_id or f"{upstream.client_id}-replies"
        taken = {upstream.client_id: "[upstream] client_id"}
        if mqtt.url:
            taken[mqtt.client_id] = "[mqtt] client_id"
        if replies in taken:
            problems.append((("upstream", "response_client_id"), (
                f"must differ from {taken[replies]} ({replies!r}); two connections with one client id"
                " throw each other off the broker"
            )))
    levels = {"prefix": upstream.prefix, "site": upstream.site, "node": upstream.node}
    problems.append(_topic_template(upstream, "topic", {**levels, "kind": "log"}))
    problems.append(_topic_template(upstream, "escalation_topic", levels))
    problems.append(_topic_template(upstream, "response_topic", levels))
    return [p for p in problems if p is not None]
