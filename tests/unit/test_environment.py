"""conda.yaml and pyproject.toml describe one environment: pyproject is the only dependency list."""

from __future__ import annotations

import tomllib

import yaml
from packaging.specifiers import SpecifierSet

from devstack import ROOT


def _conda() -> dict:
    return yaml.safe_load((ROOT / "conda.yaml").read_text(encoding="utf-8"))


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_conda_python_satisfies_requires_python() -> None:
    pythons = [d for d in _conda()["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert len(pythons) == 1
    version = pythons[0].split("=", 1)[1]
    assert SpecifierSet(_pyproject()["project"]["requires-python"]).contains(f"{version}.0")


def test_conda_installs_the_project_with_dev_extras_and_nothing_else() -> None:
    pip_sections = [d["pip"] for d in _conda()["dependencies"] if isinstance(d, dict)]
    assert pip_sections == [["-e .[dev]"]]
    conda_packages = {d.split("=")[0] for d in _conda()["dependencies"] if isinstance(d, str)}
    assert conda_packages == {"python", "pip"}, "dependencies belong in pyproject.toml"
    assert "dev" in _pyproject()["project"]["optional-dependencies"]


def test_every_runtime_dependency_has_a_pinned_range() -> None:
    project = _pyproject()["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    unpinned = [r for r in requirements if "<" not in r or ">=" not in r]
    assert unpinned == []
    assert any(r.startswith("mlflow>=3.17,<3.18") for r in project["dependencies"])
