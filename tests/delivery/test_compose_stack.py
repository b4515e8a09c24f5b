"""docker-compose.yml on a real engine, end to end: one stack for the whole module.

``scripts/containers`` provides the engine and images (seconds when cached); a fixture brings
up kafka, topic-init, postgres, monitor-db, mlflow, registry-accounts, trainer (quick
training of two families), scorer and monitor in a compose project of its own, on free host
ports, with an env file written from .env.example, and removes it (containers, networks,
volumes) however the tests end; leftovers of a crashed earlier run are removed first. The
tests run in file order on that one stack: each leaves it as the next expects. No engine is
a failure with the engine's reason, never a skip.
CI's image job runs this same module (.github/workflows/ci.yml).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from consumer.settings import Settings
from contracts.topics import APPLICATIONS_TOPIC, DEAD_LETTER_TOPIC, SCORES_TOPIC
from devstack.compose import (
    ComposeError,
    ComposeStack,
    TopicReader,
    champion_version,
    dataset_dir,
    ensure_images,
    free_port_settings,
    http_get,
    inspect,
    port_conflicts,
    project_name,
    remove_leftovers,
    throwaway_signing_keys,
    write_env_file,
)

# In `make test` (the whole suite); `compose` lets CI run it in the image job only.
# The first test's share includes building the images on a fresh machine (about 9 minutes).
pytestmark = [pytest.mark.integration, pytest.mark.compose, pytest.mark.timeout(2400)]

PREFIX = "rumos-e2e-"
COUNT = 1000
PARTITIONS = 6


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    try:
        ensure_images()
        remove_leftovers(PREFIX)
        env_file = tmp_path_factory.mktemp("compose") / "stack.env"
        write_env_file(
            env_file,
            {
                **free_port_settings(scorer_ports=4),
                "RUMOS_DATA_DIR": str(dataset_dir()),
                **throwaway_signing_keys(tmp_path_factory.mktemp("model-signing")),
                "TRAINING_QUICK": "true",
                # Two families: the stack, not the comparison, is under test here.
                "TRAINING_FAMILIES": "logistic_regression,decision_tree",
                "APPLICATION_PARTITIONS": str(PARTITIONS),
                "DEMO_COUNT": str(COUNT),
                # 1,000 in about 25 s: long enough to kill a scorer mid-stream.
                "DEMO_RATE": "40",
            },
        )
    except ComposeError as exc:
        pytest.fail(str(exc), pytrace=False)
    stack = ComposeStack(project_name(PREFIX), env_file)
    try:
        stack.up()
        yield stack
    except ComposeError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        stack.down(volumes=True)


def _assigned_partitions(stack: ComposeStack, index: int) -> int:
    port = stack.host_port("scorer", 8080, index)
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    match = re.search(r"^scorer_assigned_partitions(?:\{[^}]*\})? (\S+)$", body, re.M)
    assert match, "no scorer_assigned_partitions in /metrics"
    return int(float(match[1]))


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f} s"
        time.sleep(1)


# -- the stack as compose brings it up ----------------------------------------------------------


def test_every_service_is_up_and_the_one_shots_exited_zero(stack: ComposeStack) -> None:
    for service in ("kafka", "postgres", "mlflow", "scorer", "monitor"):
        (container,) = stack.containers(service)
        health = inspect(container, "{{.State.Health.Status}}")
        assert health == "healthy", f"{service}: {health}"
    for service in ("topic-init", "monitor-db", "registry-accounts", "trainer"):
        ids = stack.compose("ps", "--all", "--quiet", service).split()
        assert [inspect(c, "{{.State.Status}} {{.State.ExitCode}}") for c in ids] == ["exited 0"]


def test_scorer_runs_as_uid_10001_on_a_read_only_root_filesystem(stack: ComposeStack) -> None:
    (scorer,) = stack.containers("scorer")
    assert inspect(scorer, "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}") == "10001:10001 true"
    assert stack.compose("exec", "-T", "scorer", "id", "-u").strip() == "10001"
    probe = "touch /app/x 2>&1; touch /tmp/x && echo tmp-ok"
    result = stack.compose("exec", "-T", "scorer", "sh", "-c", probe, check=False)
    assert "Read-only file system" in result
    assert "tmp-ok" in result


def test_mlflow_ui_answers_on_its_published_port_to_accounts_only(stack: ComposeStack) -> None:
    assert http_get(f"{stack.mlflow}/")[0] == 401
    status, body = http_get(
        f"{stack.mlflow}/", auth=("scorer", stack.env["MLFLOW_SCORER_PASSWORD"])
    )
    assert status == 200
    assert "<html" in body.lower()


# -- two scorers, the demo stream, and a kill -9 mid-stream --------------------------------------


# --no-deps and the services named: without them every `up` runs topic-init and the trainer
# again (they exited, so compose starts them), a minute of Python and JVM starts on a busy machine.
SCALED = ("--no-deps", "--scale", "scorer=2", "scorer")


def test_two_scorers_share_the_partitions(stack: ComposeStack) -> None:
    stack.up(*SCALED)
    assert len(stack.containers("scorer")) == 2

    def shared() -> bool:
        counts = [_assigned_partitions(stack, index) for index in (1, 2)]
        return all(counts) and sum(counts) == PARTITIONS

    _wait_for(shared, 90, "both scorers holding partitions, all 6 between them")


def test_demo_scores_every_application_once_through_a_kill_9(stack: ComposeStack) -> None:
    stack.profiles = ["demo"]
    stack.up(*SCALED, "producer", "follower")
    reader = TopicReader(stack.kafka)
    try:
        assert reader.poll_until(lambda: reader.total(SCORES_TOPIC) >= 150, 120), (
            "no scores arrived"
        )
        # kill -9 of every process the worker's user may signal but init (which then exits
        # with the worker): a crash, so the restart policy applies (a `docker kill` would
        # count as a manual stop). Works where the engine's processes are not ours to signal.
        stack.compose("exec", "-T", "--index", "1", "scorer", "sh", "-c", "kill -9 -1", check=False)
        producer_state = stack.compose("ps", "--all", "--format", "{{.State}}", "producer")
        assert "running" in producer_state, "the kill was not mid-stream: producer finished"
        finished = reader.poll_until(
            lambda: len(reader.counts[SCORES_TOPIC]) >= COUNT
            and len(reader.counts[APPLICATIONS_TOPIC]) >= COUNT,
            300, settle=5,
        )  # fmt: skip
    finally:
        reader.close()
    applications, scores = reader.counts[APPLICATIONS_TOPIC], reader.counts[SCORES_TOPIC]
    assert finished, f"{len(scores)} of {COUNT} scored"
    assert len(applications) == COUNT
    assert set(scores) == set(applications), "a score is missing or for an unknown application"
    assert {key: n for key, n in scores.items() if n > 1} == {}, "duplicate scores"
    assert reader.total(DEAD_LETTER_TOPIC) == 0
    # compose (restart: unless-stopped) brought the killed scorer back.
    scorers = stack.containers("scorer")
    restarts = [int(inspect(c, "{{.RestartCount}}")) for c in scorers]
    assert sorted(restarts) == [0, 1], restarts
    _wait_for(lambda: all(inspect(c, "{{.State.Health.Status}}") == "healthy" for c in scorers),
              180, "both scorers healthy again")  # fmt: skip


_READ_MONITOR_METRICS = (
    "import urllib.request as r; print(r.urlopen('http://127.0.0.1:9101/metrics').read().decode())"
)


def test_the_monitor_measures_the_drift_of_the_demo_s_scores(stack: ComposeStack) -> None:
    """Its PSI needs the predictions, their applications, and the champion's training profile
    from MLflow; its state lives in PostgreSQL (the monitor role's own database)."""

    def measured() -> bool:
        metrics = stack.compose("exec", "-T", "monitor", "python", "-c", _READ_MONITOR_METRICS)
        return re.search(r'^monitor_psi\{subject="score"\} \d', metrics, re.M) is not None

    _wait_for(measured, 180, "the monitor's PSI of the demo's scores")
    tables = stack.compose(
        "exec", "-T", "postgres", "psql", "--username=mlflow", "--dbname=monitor",
        "--tuples-only", "--command=SELECT count(*) FROM predictions",
    )  # fmt: skip
    assert int(tables.strip()) >= COUNT


# -- named volumes --------------------------------------------------------------------------------


def test_registry_and_champion_survive_down_and_up(stack: ComposeStack) -> None:
    before = champion_version(stack.mlflow, stack.env)
    stack.profiles = []
    stack.down(volumes=False)
    stack.up()
    assert champion_version(stack.mlflow, stack.env) == before
    trainer = stack.compose("logs", "--no-color", "trainer")
    assert f"champion exists: models:/credit-default@champion is version {before}" in trainer


# -- a scorer that cannot consume ---------------------------------------------------------------


def _squatter(bootstrap: str) -> Consumer:
    """A member of the scorers' group with a protocol they do not speak, owning every partition:
    the broker refuses the scorer's JoinGroup for as long as it stays."""
    squatter = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": Settings.model_fields["group_id"].default,
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
        }
    )
    squatter.subscribe([APPLICATIONS_TOPIC])
    _wait_for(lambda: bool(squatter.poll(0.5) or squatter.assignment()), 90, "squatter assigned")
    return squatter


def _records_in(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{os.getpid()}"})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), 30) for p in partitions]
    finally:
        consumer.close()
    return sum(high - low for low, high in marks)


def test_a_scorer_refused_by_its_group_fails_its_healthcheck_and_compose_restarts_it(
    stack: ComposeStack, tmp_path: Path
) -> None:
    # The same stack, the scorer recreated with a short self-heal limit (60 s by default).
    env_file = tmp_path / "self-heal.env"
    write_env_file(env_file, {**stack.env, "SCORER_SELF_HEAL_AFTER_S": "10"})
    quick = ComposeStack(stack.project, env_file)
    stack.compose("stop", "scorer")
    squatter = _squatter(stack.kafka)
    try:
        waiting = ["--synthetic", "--count", "50", "--seed", "14"]
        publish = [sys.executable, "-m", "producer", "publish", *waiting]
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": stack.kafka}
        subprocess.run(publish, env=env, check=True, capture_output=True, timeout=120)
        quick.compose("up", "--detach", "--no-deps", "--no-build", "scorer")
        (scorer,) = quick.containers("scorer")
        # The image's HEALTHCHECK command, its verdict and message on stdout.
        healthcheck = "python /usr/local/lib/rumos/healthcheck.py 2>&1; echo exit=$?"
        check = ("exec", "-T", "scorer", "sh", "-c", healthcheck)
        seen: list[str] = []

        def failed_then_restarted() -> bool:
            seen.append(quick.compose(*check, check=False, timeout=60))
            restarted = int(inspect(scorer, "{{.RestartCount}}")) >= 1
            return restarted and any("not consuming" in out and "exit=1" in out for out in seen)

        try:
            _wait_for(failed_then_restarted, 180, "the image's check failing, then a restart")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast checks: {seen[-2:]}\n{quick.diagnosis()}") from None
    finally:
        squatter.close()
    logs = quick.compose("logs", "--no-color", "scorer")
    assert "self-healing: not consuming, replacing the Kafka consumer and producer" in logs
    assert "exiting for a restart" in logs
    # Restarted by compose, it joins the group the squatter left and scores what waited.
    published = _records_in(stack.kafka, APPLICATIONS_TOPIC)  # not transactional: one per offset
    reader = TopicReader(stack.kafka)
    try:
        finished = reader.poll_until(
            lambda: reader.total(APPLICATIONS_TOPIC) == published
            and set(reader.counts[SCORES_TOPIC]) >= set(reader.counts[APPLICATIONS_TOPIC]),
            300, settle=5,
        )  # fmt: skip
    finally:
        reader.close()
    applications, scores = reader.counts[APPLICATIONS_TOPIC], reader.counts[SCORES_TOPIC]
    assert finished, f"{len(set(applications) - set(scores))} of {published} not scored"
    assert {key: n for key, n in scores.items() if n > 1} == {}, "duplicate scores"
    _wait_for(lambda: inspect(scorer, "{{.State.Health.Status}}") == "healthy", 180,
              "the restarted scorer healthy")  # fmt: skip


# -- bad input ----------------------------------------------------------------------------------


def test_missing_postgres_password_is_refused_with_the_existing_message(tmp_path: Path) -> None:
    env_file = tmp_path / "no-password.env"
    write_env_file(env_file, {"POSTGRES_PASSWORD": ""})
    stack = ComposeStack(project_name(PREFIX), env_file)
    with pytest.raises(ComposeError) as refused:
        stack.compose("config", "--quiet", timeout=60)
    assert (
        "required variable POSTGRES_PASSWORD is missing a value: "
        "set POSTGRES_PASSWORD in .env (see .env.example)"
    ) in str(refused.value)


def test_a_taken_host_port_is_reported_with_the_variable_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104
        port = taken.getsockname()[1]
        settings = {**free_port_settings(), "MLFLOW_HOST_PORT": str(port)}
        assert port_conflicts(settings) == [
            f"host port {port} is already taken: set MLFLOW_HOST_PORT (in .env or the "
            "environment) to a free one"
        ]
        env_file = tmp_path / "taken.env"
        write_env_file(env_file, settings)
        with pytest.raises(ComposeError, match="set MLFLOW_HOST_PORT"):
            ComposeStack(project_name(PREFIX), env_file).up()
