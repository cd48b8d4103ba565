"""Shared pytest fixtures."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.mosquitto import MISSING_HINT, MOSQUITTO, Mosquitto


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A private broker on a free port of 127.0.0.1, stopped after the test."""
    if not MOSQUITTO.exists():
        pytest.fail(MISSING_HINT, pytrace=False)
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
