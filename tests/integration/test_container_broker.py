"""The worker on a Kafka container, as testcontainers runs it: the suite's other broker path.

``make test`` runs the session on ``scripts/kafka-local`` (``RUMOS_TEST_BROKER=local``): it
starts in seconds and needs no image, and each pytest process starts its own. This
module proves the container path on every run: it overrides the broker with a
``devstack`` ``ContainerBroker`` from the configured image (``KAFKA_IMAGE``, else the stand-in
``scripts/containers`` builds where no registry answers) and runs a worker through a
``kill -9`` on it. No engine is a failure with the engine's reason, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from devstack import DevstackError, unique_name
from devstack.compose import ensure_images
from devstack.container import ContainerBroker
from tests.helpers.applications import applications_from_frame
from tests.helpers.scenario import Scenario, kill_after_scoring
from tests.helpers.stream import encoded

# The first test's share includes building the images on a fresh machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

_AVAILABLE = 6_000
_RATE_PER_S = 100.0
_AFTER_RESTART = 300


@pytest.fixture(scope="module")
def kafka_bootstrap_servers() -> Iterator[str]:
    """A Kafka container for this module, in place of the session's broker."""
    try:
        ensure_images()
        broker = ContainerBroker()
        broker.start()
    except DevstackError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.close()


def test_a_worker_on_a_kafka_container_scores_exactly_once_through_a_kill_9(
    scenario: Scenario, feature_frame: pd.DataFrame
) -> None:
    scenario.register()
    worker = scenario.start_worker("container-0")
    applications = applications_from_frame(feature_frame, _AVAILABLE, prefix=unique_name("ctr"))
    publisher = scenario.publish(encoded(applications), rate_per_s=_RATE_PER_S)

    kill_after_scoring(worker, 150)
    scenario.start_worker("container-0")
    ids = publisher.stop_after(_AFTER_RESTART)
    scenario.wait_for_outcomes(ids)
    scenario.stop_workers()

    scenario.audit().assert_exactly_once(ids)
