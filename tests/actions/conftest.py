"""A real Mosquitto broker for the actions tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.services import MosquittoProcess


@pytest.fixture
def plain_broker(mosquitto: Any) -> MosquittoProcess:
    """Anonymous access on a free port."""
    return mosquitto()
