"""GitHub workflows and dependabot: actionlint, zizmor, and the project's CI/CD rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.delivery.support import ROOT, run_tool, venv_tool

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


# -- the linters ------------------------------------------------------------------------------


def test_actionlint_passes_with_shellcheck() -> None:
    venv_tool("shellcheck")  # actionlint checks `run:` scripts with it when it is on PATH
    result = run_tool(venv_tool("actionlint"), "-verbose")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ci.yml" in result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    needs: nowhere\n    steps:\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n",
        encoding="utf-8",
    )
    result = run_tool(venv_tool("actionlint"), str(workflows / "bad.yml"), cwd=tmp_path)
    assert result.returncode == 1
    assert "[expression]" in result.stdout  # untrusted input in an inline script
    assert "[job-needs]" in result.stdout


def test_zizmor_passes() -> None:
    result = run_tool(venv_tool("zizmor"), "--offline", "--no-progress", ".github")
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_rejects_an_unsafe_workflow(tmp_path: Path) -> None:
    workflow = tmp_path / "unsafe.yml"
    workflow.write_text(
        "on: pull_request_target\npermissions: write-all\njobs:\n  a:\n"
        "    runs-on: ubuntu-24.04\n    steps:\n      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n",
        encoding="utf-8",
    )
    result = run_tool(venv_tool("zizmor"), "--offline", "--no-progress", str(workflow))
    assert result.returncode != 0
    assert "template-injection" in result.stdout


def _shell_scripts() -> list[str]:
    """Every file under docker/, scripts/ and .github/scripts/ that starts with a sh/bash line."""
    found = []
    for folder in ("docker", "scripts", ".github/scripts"):
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".xml", ".properties"):
                continue
            first = path.read_bytes().split(b"\n", 1)[0]
            if re.match(rb"#!\s*/(usr/)?bin/(env\s+)?(ba)?sh\b", first):
                found.append(str(path.relative_to(ROOT)))
    return found


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = _shell_scripts()
    for expected in ("docker/entrypoint.sh", "scripts/containers", "docker/local/kafka/run"):
        assert expected in scripts
    result = run_tool(venv_tool("shellcheck"), *scripts)
    assert result.returncode == 0, result.stdout


def test_dependabot_config_is_valid_and_covers_pip_actions_and_images() -> None:
    path = ROOT / ".github" / "dependabot.yml"
    result = run_tool(
        venv_tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", str(path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    import yaml

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
    for name in ("unit", "integration", "image"):
        assert jobs[name]["needs"] == "lint"
    assert any(step.get("run") == "make test-unit" for step in jobs["unit"]["steps"])
    runs = " ".join(step.get("run", "") for step in jobs["integration"]["steps"])
    assert "pytest -m integration" in runs


def test_jobs_that_need_the_dataset_fetch_and_verify_it(ci: dict[str, Any]) -> None:
    script = ROOT / ".github" / "scripts" / "fetch-dataset.sh"
    assert "sha256sum --check" in script.read_text(encoding="utf-8")
    for name in ("unit", "integration", "image"):
        fetch = [
            s for s in ci["jobs"][name]["steps"] if s.get("run") == str(script.relative_to(ROOT))
        ]
        assert len(fetch) == 1, name
        assert fetch[0]["env"] == {
            "DATA_URL": "${{ secrets.RUMOS_DATA_URL }}",
            "DATA_SHA256": "${{ vars.RUMOS_DATA_SHA256 }}",
        }


def test_image_is_built_with_the_actions_cache_then_scanned_and_smoke_tested(
    ci: dict[str, Any],
) -> None:
    image = ci["jobs"]["image"]
    builds = _step_using(image, "docker/build-push-action")
    assert {build["with"]["target"] for build in builds} == {"runtime", "mlflow-server"}
    for build in builds:
        assert build["with"]["load"] is True
        assert build["with"]["cache-from"].startswith("type=gha")
        assert build["with"]["cache-to"].startswith("type=gha,mode=max")
    app_image = next(b for b in builds if b["with"]["target"] == "runtime")["with"]["tags"]
    (scan,) = _step_using(image, "aquasecurity/trivy-action")
    assert scan["with"]["image-ref"] == app_image
    assert scan["with"]["severity"] == "CRITICAL"
    assert scan["with"]["exit-code"] == "1"
    (smoke,) = [step for step in image["steps"] if step.get("run") == "docker/smoke-test.sh"]
    assert smoke["env"]["SCORER_IMAGE"] == app_image
    assert smoke["env"]["SMOKE_COUNT"] == "100"
    order = [image["steps"].index(step) for step in (*builds, scan, smoke)]
    assert order == sorted(order)


def test_smoke_test_publishes_and_follows_through_compose() -> None:
    script = (ROOT / "docker" / "smoke-test.sh").read_text(encoding="utf-8")
    assert re.search(r"compose run .*producer publish --synthetic --count \"\$count\"", script)
    assert re.search(r"follower follow --from-beginning --count \"\$count\"", script)
    assert "--timeout" in script


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
