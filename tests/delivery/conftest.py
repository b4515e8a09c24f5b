"""Fixtures for the delivery tests: the Dockerfile, compose file and workflows as data."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from devstack import ROOT
from tests.delivery.support import Instruction, parse_dockerfile


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "compose: brings up docker-compose.yml on a real engine (test_compose_stack)"
    )


@pytest.fixture(scope="session")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """docker-compose.yml as data (YAML merge keys resolved, variables not interpolated)."""
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def workflows() -> dict[str, dict[str, Any]]:
    """Every workflow under .github/workflows, by file name."""
    return {
        path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    }
