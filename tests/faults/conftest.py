"""Fault tests record their figures (messages sent, stored, gaps, duplicates,
recovery time); they are printed at the end of the run and written to
var/reliability-figures.json for docs/reliability.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIGURES: dict[str, dict[str, Any]] = {}
OUTPUT = Path(__file__).resolve().parents[2] / "var" / "reliability-figures.json"


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A dict the test fills; kept under the test's name."""
    found: dict[str, Any] = {}
    FIGURES[request.node.name] = found
    return found


def pytest_terminal_summary(terminalreporter: Any) -> None:
    recorded = {name: values for name, values in FIGURES.items() if values}
    if not recorded:
        return
    terminalreporter.section("fault test figures")
    for name, values in sorted(recorded.items()):
        shown = ", ".join(f"{key}={value}" for key, value in values.items())
        terminalreporter.write_line(f"{name}: {shown}")
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
