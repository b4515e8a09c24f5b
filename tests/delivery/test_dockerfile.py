"""The Dockerfile and .dockerignore: structure and agreement with the code.

hadolint checks them in `make lint`.
"""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from consumer.settings import Settings
from devstack import ROOT
from tests.delivery.support import (
    Instruction,
    base_images,
    default_base,
    global_args,
    parse_dockerfile,
    settings_env_names,
)

_PINNED_IMAGE = re.compile(r"^[\w./-]+:[\w.-]+(@sha256:[0-9a-f]{64})?$")
_OCI_LABELS = {"title", "description", "version", "revision", "created", "source", "licenses"}


def _stage(dockerfile: list[Instruction], stage: str) -> list[Instruction]:
    found = [i for i in dockerfile if i.stage == stage]
    assert found, f"no stage {stage!r} in the Dockerfile"
    return found


def _only(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in instructions if i.keyword == keyword]


def _json_array(arguments: str) -> list[str]:
    import json

    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form: {arguments}"
    return [str(item) for item in value]


# -- structure ---------------------------------------------------------------------------


def test_stages_are_builder_mlflow_server_and_runtime_last(dockerfile: list[Instruction]) -> None:
    stages = [i.stage for i in _only(dockerfile, "FROM")]
    # The two official base images first, as stages the build arguments name by default.
    assert stages == ["python-official", "mlflow-official", "builder", "mlflow-server", "runtime"]
    # The last stage is what `docker build .` (and compose's target: runtime) produces.
    assert dockerfile[-1].stage == "runtime"


def test_base_images_are_build_arguments_defaulting_to_official_pinned_images(
    dockerfile: list[Instruction],
) -> None:
    # A machine without registry access passes its own stand-ins (scripts/containers). By
    # default each argument names a stage that is the official image, pinned in its FROM line
    # (dependabot updates FROM lines, not ARG defaults).
    written, defaults = base_images(dockerfile), global_args(dockerfile)
    for stage in ("builder", "mlflow-server", "runtime"):
        argument = re.fullmatch(r"\$\{(\w+)\}", written[stage])
        assert argument, f"{stage} is based on {written[stage]}, not a build argument"
        official = defaults[argument[1]]
        assert official in written, f"{argument[1]} does not default to an official stage"
        image = default_base(dockerfile, stage)
        assert _PINNED_IMAGE.match(image), f"{image} is not pinned by an explicit tag"
        assert ":latest" not in image
    assert written["builder"] == written["runtime"], "builder and runtime must share one base"
    assert "@sha256:" in default_base(dockerfile, "runtime"), "the app's base is digest-pinned"
    # The official stages are bare FROM lines: nothing is built on them but through the
    # arguments, so a passed stand-in replaces them completely.
    for stage in ("python-official", "mlflow-official"):
        assert [i.keyword for i in dockerfile if i.stage == stage] == ["FROM"]


def test_no_syntax_directive_so_the_builders_own_frontend_is_used() -> None:
    # `# syntax=` makes BuildKit pull a frontend image, which fails where no registry answers.
    first = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()[0]
    assert not re.match(r"#\s*syntax\s*=", first, re.I), first


def test_python_base_matches_requires_python(dockerfile: list[Instruction]) -> None:
    python_image = default_base(dockerfile, "runtime")
    version = re.match(r"python:(\d+\.\d+)-slim", python_image)
    assert version, f"{python_image} is not a slim python image"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "requires-python"
    ]
    assert SpecifierSet(requires).contains(f"{version[1]}.0")


def test_mlflow_server_image_matches_the_pinned_client_minor(dockerfile: list[Instruction]) -> None:
    image = default_base(dockerfile, "mlflow-server")
    match = re.fullmatch(r"ghcr\.io/mlflow/mlflow:v(\d+)\.(\d+)\.\d+", image)
    assert match, image
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "dependencies"
    ]
    assert f"mlflow>={match[1]}.{match[2]},<" in " ".join(dependencies)
    runs = " ".join(i.arguments for i in _only(_stage(dockerfile, "mlflow-server"), "RUN"))
    assert re.search(r"psycopg2-binary==\d+\.\d+\.\d+", runs), "the PostgreSQL driver is missing"


def test_dependencies_get_their_own_cached_layer_before_the_sources(
    dockerfile: list[Instruction],
) -> None:
    builder = _stage(dockerfile, "builder")
    copies = [i for i in builder if i.keyword == "COPY"]
    installs = [i for i in builder if i.keyword == "RUN" and "pip install" in i.arguments]
    assert copies[0].arguments.split() == ["pyproject.toml", "./"], (
        "only pyproject.toml before the dependency layer: a README edit reinstalled everything"
    )
    assert len(installs) == 2
    dependencies, project = installs
    assert copies[0].line < dependencies.line < copies[1].line, (
        "dependencies must install after pyproject.toml is copied and before any source"
    )
    assert all(c.line < project.line for c in copies)
    for install in installs:
        assert "--mount=type=cache,target=/root/.cache/pip" in install.arguments
    assert "--no-deps" in project.arguments


def test_runtime_runs_as_a_non_root_user(dockerfile: list[Instruction]) -> None:
    for stage in ("runtime", "mlflow-server"):
        users = _only(_stage(dockerfile, stage), "USER")
        assert users, f"{stage} never drops root"
        user = users[-1].arguments.split(":")[0]
        assert user not in ("root", "0"), f"{stage} runs as {user}"


def test_entrypoint_selects_the_job_and_defaults_to_the_worker(
    dockerfile: list[Instruction],
) -> None:
    runtime = _stage(dockerfile, "runtime")
    entrypoint = _json_array(_only(runtime, "ENTRYPOINT")[-1].arguments)
    assert entrypoint == ["/usr/local/bin/rumos"]
    assert _json_array(_only(runtime, "CMD")[-1].arguments) == ["worker"]
    copies = " ".join(i.arguments for i in _only(runtime, "COPY"))
    assert "--chmod=0755 docker/entrypoint.sh /usr/local/bin/rumos" in copies


def test_oci_labels_come_from_build_arguments(dockerfile: list[Instruction]) -> None:
    runtime = _stage(dockerfile, "runtime")
    labels = " ".join(i.arguments for i in _only(runtime, "LABEL"))
    keys = set(re.findall(r"org\.opencontainers\.image\.([\w.]+)=", labels))
    assert keys >= _OCI_LABELS
    arguments = {i.arguments.split("=")[0] for i in _only(runtime, "ARG")}
    assert {"VERSION", "REVISION", "CREATED"} <= arguments
    for name, label in (("VERSION", "version"), ("REVISION", "revision"), ("CREATED", "created")):
        assert f'org.opencontainers.image.{label}="${{{name}}}"' in labels


def test_nothing_but_the_packages_and_image_scripts_is_copied(
    dockerfile: list[Instruction],
) -> None:
    sources: list[str] = []
    for copy in _only(dockerfile, "COPY"):
        words = [w for w in copy.arguments.split() if not w.startswith("--")]
        if "--from=" not in copy.arguments:
            sources.extend(words[:-1])
    allowed = {
        "pyproject.toml",
        "README.md",
        "contracts",
        "training",
        "consumer",
        "producer",
        "monitor",
    }
    allowed |= {"docker/entrypoint.sh", "docker/healthcheck.py", "docker/mlflow-auth.ini"}
    assert set(sources) <= allowed, f"unexpected files in the image: {set(sources) - allowed}"


# -- agreement with the worker ------------------------------------------------------------


def test_exposed_port_is_the_worker_http_port_default(dockerfile: list[Instruction]) -> None:
    exposed = [int(i.arguments) for i in _only(_stage(dockerfile, "runtime"), "EXPOSE")]
    assert exposed == [Settings.model_fields["http_port"].default]


def test_image_environment_sets_only_real_worker_settings(dockerfile: list[Instruction]) -> None:
    environment = " ".join(i.arguments for i in _only(_stage(dockerfile, "runtime"), "ENV"))
    names = set(re.findall(r"(\w+)=", environment))
    scorer = {n for n in names if n.startswith("SCORER_")}
    assert scorer, "the image configures the worker for a container (host, model cache)"
    assert scorer <= settings_env_names(Settings), scorer - settings_env_names(Settings)
    # Listening on loopback only would make the published port and healthcheck useless.
    assert "SCORER_HTTP_HOST=0.0.0.0" in environment


def test_every_writable_path_is_under_tmp(dockerfile: list[Instruction]) -> None:
    environment = " ".join(i.arguments for i in _only(_stage(dockerfile, "runtime"), "ENV"))
    values = dict(re.findall(r"(\w+)=(\S+)", environment))
    for name in ("HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR", "SCORER_MODEL_CACHE_DIR"):
        assert values[name] == "/tmp" or values[name].startswith("/tmp/"), name
    assert not Path(str(Settings.model_fields["model_cache_dir"].default)).is_absolute(), (
        "the worker's default cache dir is relative: the image must override it"
    )


def test_entrypoint_jobs_run_modules_that_exist() -> None:
    script = (ROOT / "docker" / "entrypoint.sh").read_text(encoding="utf-8")
    modules = set(re.findall(r"exec python -m (\w+)", script))
    assert modules == {"consumer", "training", "producer", "monitor"}
    for module in modules:
        assert (ROOT / module / "__main__.py").is_file(), f"python -m {module} has no __main__"


# -- the healthcheck, against a real HTTP server --------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b'{"live": false, "reasons": ["not consuming"]}'
        self.send_response(self.status if self.path == "/livez" else 404)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _healthcheck(port: int | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
    env["PYTHONPATH"] = str(ROOT)
    if port is not None:
        env["SCORER_HTTP_PORT"] = str(port)
    return subprocess.run(
        [sys.executable, str(ROOT / "docker" / "healthcheck.py")],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_healthcheck_passes_when_livez_answers_200(
    health_server: http.server.HTTPServer,
) -> None:
    _Health.status = 200
    assert _healthcheck(health_server.server_port).returncode == 0


def test_healthcheck_fails_on_an_error_status_or_no_server(
    health_server: http.server.HTTPServer,
) -> None:
    _Health.status = 503
    result = _healthcheck(health_server.server_port)
    assert result.returncode == 1
    assert "/livez: 503" in result.stderr
    assert "not consuming" in result.stderr
    port = health_server.server_port
    health_server.shutdown()
    health_server.server_close()
    assert _healthcheck(port).returncode == 1


def test_dockerfile_healthcheck_runs_the_script_the_image_copies(
    dockerfile: list[Instruction],
) -> None:
    runtime = _stage(dockerfile, "runtime")
    check = _only(runtime, "HEALTHCHECK")[-1].arguments
    command = _json_array(check.split("CMD", 1)[1].strip())
    copies = " ".join(i.arguments for i in _only(runtime, "COPY"))
    assert command[0] == "python"
    assert f"docker/healthcheck.py {command[1]}" in copies


# -- .dockerignore ---------------------------------------------------------------------------


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        patterns.append((negated, re.compile(_glob_regex(pattern))))
    return patterns


def _glob_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def _excluded(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in _ignore_patterns():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        "data/credit_default.csv",
        ".venv/bin/python",
        "mlruns/0/meta.yaml",
        "mlartifacts/1/model.pkl",
        "mlflow.db",
        ".git/HEAD",
        ".cache/kafka/4.1.1/lib/kafka.jar",
        ".env",
        ".github/workflows/ci.yml",
        "tests/conftest.py",
        "notebooks/eda.ipynb",
        "consumer/__pycache__/worker.cpython-311.pyc",
        "training/.mypy_cache/x.json",
        "training/reports/sample.csv",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert _excluded(path)


def test_dockerignore_lets_in_everything_the_dockerfile_copies(
    dockerfile: list[Instruction],
) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "contracts", "training", "consumer", "producer", "monitor"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    sources = ["pyproject.toml", "README.md", "docker/entrypoint.sh", "docker/healthcheck.py"]
    sources += ["docker/mlflow-auth.ini"]
    sources += [path for path in tracked if path.endswith((".py", ".json"))]
    assert any(path.startswith("consumer/") for path in sources)
    kept_out = [path for path in sources if _excluded(path)]
    assert kept_out == []


# -- hadolint (run by `make lint`) ------------------------------------------------------------


def test_hadolint_ignores_are_explained() -> None:
    for number, line in enumerate((ROOT / "Dockerfile").read_text().splitlines(), start=1):
        if "hadolint ignore" in line:
            reason = line.split("hadolint ignore", 1)[1].split(maxsplit=1)
            assert len(reason) == 2, f"Dockerfile:{number}: an ignored rule needs a reason"


def test_parse_dockerfile_joins_continuations_and_drops_comments() -> None:
    parsed = parse_dockerfile("FROM a:1 AS one\n# note\nRUN x \\\n  # inner\n  && y\nFROM b:2\n")
    assert [(i.keyword, i.arguments, i.stage) for i in parsed] == [
        ("FROM", "a:1 AS one", "one"),
        ("RUN", "x && y", "one"),
        ("FROM", "b:2", "b:2"),
    ]
