"""GitHub workflows and dependabot: the project's CI/CD rules (their linters run in `make lint`)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from devstack import ROOT

_PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
_VERSION_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+\s*$")


def _triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as the boolean true.
    triggers: dict[str, Any] = workflow.get("on") or workflow[True]
    return triggers


def _steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, body in workflow["jobs"].items() for step in body["steps"]]


def _step_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


@pytest.fixture(scope="module")
def ci(workflows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return workflows["ci.yml"]


# -- the linters (actionlint, zizmor, shellcheck: run by `make lint`) -------------------------


def test_dependabot_covers_pip_actions_and_images() -> None:
    # Its schema is checked by `make lint` (check-jsonschema's dependabot schema).
    path = ROOT / ".github" / "dependabot.yml"
    updates = yaml.safe_load(path.read_text(encoding="utf-8"))["updates"]
    ecosystems = {update["package-ecosystem"] for update in updates}
    assert {"pip", "github-actions", "docker", "docker-compose"} <= ecosystems


# -- supply chain and permissions --------------------------------------------------------------


def test_third_party_actions_are_pinned_by_full_sha_with_a_version_comment() -> None:
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if not match or match[1].startswith("./"):
                continue
            assert _PINNED.match(match[1]), f"{path.name}:{number}: {match[1]} is not SHA-pinned"
            assert _VERSION_COMMENT.search(match[2]), f"{path.name}:{number}: no # vX.Y.Z"


def test_one_sha_per_action(workflows: dict[str, dict[str, Any]]) -> None:
    pins: dict[str, set[str]] = {}
    for workflow in workflows.values():
        for _job, step in _steps(workflow):
            if "uses" in step:
                action, _, sha = step["uses"].partition("@")
                pins.setdefault(action, set()).add(sha)
    assert {action: shas for action, shas in pins.items() if len(shas) > 1} == {}


def test_checkouts_do_not_persist_credentials(workflows: dict[str, dict[str, Any]]) -> None:
    for name, workflow in workflows.items():
        for job, step in _steps(workflow):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, f"{name}:{job}"


def test_permissions_are_read_only_except_where_a_job_needs_more(
    workflows: dict[str, dict[str, Any]],
) -> None:
    for name, workflow in workflows.items():
        assert workflow["permissions"] == {"contents": "read"}, name
        for job_name, job in workflow["jobs"].items():
            granted = job.get("permissions", {})
            writes = {scope for scope, level in granted.items() if level == "write"}
            assert writes <= ({"packages"} if job_name == "publish" else set()), job_name


def test_every_job_has_a_timeout_and_runs_cancel_stale_runs(
    workflows: dict[str, dict[str, Any]],
) -> None:
    for name, workflow in workflows.items():
        assert workflow["concurrency"]["cancel-in-progress"] is True, name
        assert "github.ref" in workflow["concurrency"]["group"]
        for job_name, job in workflow["jobs"].items():
            assert 0 < job["timeout-minutes"] <= 90, f"{name}:{job_name}"


# -- what CI does ----------------------------------------------------------------------------------


def test_ci_runs_on_pull_requests_main_and_version_tags(ci: dict[str, Any]) -> None:
    triggers = _triggers(ci)
    assert "pull_request" in triggers
    assert triggers["push"] == {"branches": ["main"], "tags": ["v*"]}


def test_lint_runs_before_the_tests(ci: dict[str, Any]) -> None:
    jobs = ci["jobs"]
    assert any(step.get("run") == "make lint" for step in jobs["lint"]["steps"])
    for name in ("unit", "integration", "image", "real-data"):
        assert jobs[name]["needs"] == "lint"
    assert any(step.get("run") == "make test-unit" for step in jobs["unit"]["steps"])
    runs = " ".join(step.get("run", "") for step in jobs["integration"]["steps"])
    # The compose test runs in the image job, on the images it has just built.
    assert 'pytest -m "integration and not compose"' in runs


_DATASET_ENV = {
    "DATA_URL": "${{ secrets.RUMOS_DATA_URL }}",
    "DATA_SHA256": "${{ vars.RUMOS_DATA_SHA256 }}",
}


def test_a_fresh_fork_needs_no_secret_the_jobs_make_up_their_data(ci: dict[str, Any]) -> None:
    script = (ROOT / ".github" / "scripts" / "dataset.sh").read_text(encoding="utf-8")
    assert "sha256sum --check" in script
    assert "-m scripts.synthetic_dataset data/credit_default.csv" in script
    for name in ("unit", "integration", "image"):
        (step,) = [
            s for s in ci["jobs"][name]["steps"] if s.get("run") == ".github/scripts/dataset.sh"
        ]
        assert step["env"] == _DATASET_ENV, name
        assert "REQUIRE_REAL_DATA" not in step["env"]
    # Secrets are read only to fetch the dataset.
    for name, job in ci["jobs"].items():
        text = str(job)
        if name in ("unit", "integration", "image"):
            assert text.count("secrets.") == 1, name
        elif name not in ("real-data", "publish"):
            assert "secrets." not in text, name


def test_only_the_real_data_job_requires_the_dataset_and_does_nothing_without_it(
    ci: dict[str, Any],
) -> None:
    job = ci["jobs"]["real-data"]
    assert job["env"] == _DATASET_ENV
    first, *rest = job["steps"]
    assert first["if"] == "env.DATA_URL == ''"
    assert all(step["if"] == "env.DATA_URL != ''" for step in rest)
    (fetch,) = [s for s in rest if s.get("run") == ".github/scripts/dataset.sh"]
    assert fetch["env"] == {"REQUIRE_REAL_DATA": "true"}
    assert rest[-1]["run"] == "make train"


def test_image_is_built_by_scripts_containers_scanned_and_tested_through_compose(
    ci: dict[str, Any],
) -> None:
    image = ci["jobs"]["image"]
    (build,) = [step for step in image["steps"] if step.get("run") == "scripts/containers"]
    app_image = re.search(
        r"^readonly app_image=\$\{SCORER_IMAGE:-(\S+)\}$",
        (ROOT / "scripts" / "containers").read_text(encoding="utf-8"),
        re.M,
    )
    assert app_image
    assert ci["env"]["APP_IMAGE"] == app_image[1]
    (scan,) = _step_using(image, "aquasecurity/trivy-action")
    assert scan["with"]["image-ref"] == "${{ env.APP_IMAGE }}"
    assert scan["with"]["severity"] == "CRITICAL"
    assert scan["with"]["exit-code"] == "1"
    # The same module `make test` runs locally, not a second smoke script.
    (compose,) = [step for step in image["steps"] if "test_compose_stack.py" in step.get("run", "")]
    assert compose["run"] == (
        ".venv/bin/python -m pytest -m compose tests/delivery/test_compose_stack.py"
    )
    assert (ROOT / "tests" / "delivery" / "test_compose_stack.py").is_file()
    assert not (ROOT / "docker" / "smoke-test.sh").exists()
    order = [image["steps"].index(step) for step in (build, scan, compose)]
    assert order == sorted(order)


def test_publish_pushes_to_ghcr_with_attestations_only_after_everything_passed(
    ci: dict[str, Any],
) -> None:
    publish = ci["jobs"]["publish"]
    assert set(publish["needs"]) == {"unit", "integration", "image"}
    assert "refs/heads/main" in publish["if"]
    assert "refs/tags/v" in publish["if"]
    (meta,) = _step_using(publish, "docker/metadata-action")
    assert meta["with"]["images"] == "ghcr.io/${{ github.repository }}"
    tags = meta["with"]["tags"].split()
    assert "type=sha" in tags
    assert "type=semver,pattern={{version}}" in tags
    (login,) = _step_using(publish, "docker/login-action")
    assert login["with"]["registry"] == "ghcr.io"
    (build,) = _step_using(publish, "docker/build-push-action")
    assert build["with"]["push"] is True
    assert build["with"]["sbom"] is True
    assert build["with"]["provenance"] == "mode=max"
    assert build["with"]["tags"] == "${{ steps.meta.outputs.tags }}"
    assert build["with"]["cache-from"].startswith("type=gha")
