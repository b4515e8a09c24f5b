"""The exploration notebook runs top to bottom (nbclient, quick mode, temporary MLflow store)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from mlflow import MlflowClient
from nbclient import NotebookClient

from contracts.model_names import CHAMPION_ALIAS
from devstack import ROOT, unique_name
from training import aliases

NOTEBOOK = ROOT / "notebooks" / "rumos_bank_lending_prediction.ipynb"
FAMILIES = "logistic_regression,decision_tree,hist_gradient_boosting"
_KERNEL = "python3"


@pytest.fixture(scope="session")
def python_kernel() -> str:
    """ipykernel's spec for this interpreter, installed into the venv (--sys-prefix) if absent.

    pip installs it with ipykernel; an environment that lost it gets it back here.
    """
    if _KERNEL not in KernelSpecManager().find_kernel_specs():
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", _KERNEL],
            check=True,
            capture_output=True,
        )
    return _KERNEL


def test_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code_cells)


@pytest.mark.integration
def test_notebook_trains_and_leaves_a_champion(
    python_kernel: str, credit_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model_name = unique_name("notebook")
    # The kernel inherits this environment; the notebook reads nothing else.
    for name, value in {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "RUMOS_DATA": str(credit_csv),
        "RUMOS_TRAINING_QUICK": "true",
        "RUMOS_TRAINING_FAMILIES": FAMILIES,
        "RUMOS_TRAINING_MODEL_NAME": model_name,
        "RUMOS_TRAINING_EXPERIMENT": unique_name("notebook"),
        "RUMOS_TRAINING_ARTIFACT_LOCATION": str(tmp_path / "artifacts"),
    }.items():
        monkeypatch.setenv(name, value)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name=python_kernel,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()

    client = MlflowClient(tracking_uri, tracking_uri)
    versions = client.search_model_versions(f"name = '{model_name}'")
    assert len(versions) == len(FAMILIES.split(","))
    champion = aliases(client, model_name)[CHAMPION_ALIAS]
    text = "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )
    assert f"champion: version {champion}" in text
    assert "lowest expected cost" in text
    assert not (ROOT / "notebooks" / "mlflow.db").exists()  # nothing written beside it
