"""What signature and manifest verification adds to loading a champion (issue 11: under 10%).

    python -m scripts.verification_cost [--family random_forest] [--loads 7]

Fits one candidate family (quick grid) on the dataset (RUMOS_DATA), logs and signs it as
training does in a throwaway SQLite registry, downloads it once, then times, per load of
the cached files (median over ``--loads``): the loader the worker used before
(``mlflow.pyfunc.load_model`` + ``get_raw_model``), the vetted load without a signature
check, the vetted load with it, and the verification alone (signature + sha256 of files).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import mlflow
import mlflow.pyfunc
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mlflow import MlflowClient

from consumer.vetting import ModelTrust, load_pipeline, vet
from contracts.model_trust import check_files, verify_signed_manifest
from training.candidates import CANDIDATES, make_search
from training.data import load_dataset, split_dataset
from training.packaging import log_credit_model, pinned_requirements
from training.policies import FAIR_LENDING, POLICIES
from training.settings import DEFAULT_DATA_PATH, Family
from training.signing import _download, sign_version
from training.tracking import using_tracking_uri


def _medians_s(actions: list[Callable[[], object]], loads: int) -> list[float]:
    """Median seconds of each action over ``loads`` rounds, interleaved (a shared machine's
    load then weighs on every action alike)."""
    times: list[list[float]] = [[] for _ in actions]
    for round_ in range(loads):
        for i in ((round_ + k) % len(actions) for k in range(len(actions))):
            started = time.perf_counter()
            actions[i]()
            times[i].append(time.perf_counter() - started)
    return [statistics.median(t) for t in times]


def main(
    family: Family = Family.RANDOM_FOREST,
    loads: int = 7,
    data: Annotated[Path, typer.Option(envvar="RUMOS_DATA")] = DEFAULT_DATA_PATH,
) -> None:
    split = split_dataset(load_dataset(data), seed=42, quick=True)
    spec = CANDIDATES[family]
    features = POLICIES[FAIR_LENDING].features
    search = make_search(spec, features, seed=42, quick=True, n_jobs=1)
    search.fit(split.train_features.loc[:, list(features)], split.train_target)
    workdir = Path(tempfile.mkdtemp(prefix="verification-cost-"))
    uri, name, key = (
        f"sqlite:///{workdir / 'mlflow.db'}",
        "credit-default",
        Ed25519PrivateKey.generate(),
    )
    with using_tracking_uri(uri), mlflow.start_run():
        info = log_credit_model(
            search.best_estimator_,
            threshold=0.5,
            sample=split.validation_features,
            registered_model_name=name,
            skops_trusted_types=spec.trusted_types,
            pip_requirements=pinned_requirements(),
            features=features,
            feature_policy=FAIR_LENDING,
        )
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = str(info.registered_model_version)
    sign_version(client, uri, name, version, key)
    local = _download(client, uri, name, version, workdir / "cache")
    tags = dict(client.get_model_version(name, version).tags)
    signed = ModelTrust(public_keys=(key.public_key(),))
    unsigned = ModelTrust(allow_unsigned=True)

    before, vetted_unsigned, vetted_signed, verification = _medians_s(
        [
            lambda: mlflow.pyfunc.load_model(str(local)).get_raw_model(),
            lambda: load_pipeline(vet(local, {}, unsigned)),
            lambda: load_pipeline(vet(local, tags, signed)),
            lambda: check_files(verify_signed_manifest(tags, [key.public_key()]), local),
        ],
        loads,
    )
    size = sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
    print(f"{family}: artifact {size / 1e6:.2f} MB, median of {loads} loads")
    print(f"  before (mlflow.pyfunc.load_model):     {before * 1e3:8.1f} ms")
    print(f"  vetted load, no signature check:       {vetted_unsigned * 1e3:8.1f} ms")
    print(f"  vetted load, signature + files:        {vetted_signed * 1e3:8.1f} ms")
    print(f"  verification alone:                    {verification * 1e3:8.1f} ms")
    print(f"  verification / load before:            {verification / before:8.1%}")
    print(f"  (vetted signed - unsigned) / unsigned: {(vetted_signed / vetted_unsigned - 1):8.1%}")


if __name__ == "__main__":
    typer.run(main)
