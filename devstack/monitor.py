"""The monitor as a process: ``python -m monitor``, observed through its metrics and its
group's committed offsets; ``python -m monitor report`` on the same settings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from contracts.registry_access import PASSWORD_VARIABLE, USERNAME_VARIABLE
from devstack.processes import (
    POLL_S,
    DevstackError,
    ModuleProcess,
    scrape,
    settings_env,
    unique_name,
    wait_until,
)
from monitor.settings import Settings

_KAFKA_TIMEOUT_S: Final = 10.0
_REPORT_TIMEOUT_S: Final = 300.0
# A registry account this process holds must not reach a monitor whose settings have none.
_NEVER_INHERITED: Final = (USERNAME_VARIABLE, PASSWORD_VARIABLE)


def monitor_env(settings: Settings) -> dict[str, str]:
    """This process's environment without its ``MONITOR_*`` variables and registry account, plus
    every field of ``settings`` that is set: exactly the settings the caller validated."""
    values = {name: value for name, value in settings if value is not None}
    return settings_env(Settings, values, _NEVER_INHERITED, inherit=False)


class MonitorProcess(ModuleProcess):
    """One ``python -m monitor`` process on ``settings``, its metrics and its group's offsets."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        super().__init__("monitor", monitor_env(settings), log_path)

    def metrics(self) -> dict[str, float]:
        port = self.settings.metrics_port
        return scrape(f"http://127.0.0.1:{port}/metrics") if port else {}

    def caught_up(self) -> bool:
        """Whether the group committed every record of every input: none is readable
        (``read_committed``) at or past its committed offsets. False while the brokers cannot
        say (offsets of a transaction still open).

        Read rather than compared with the topics' ends: the markers that end the workers'
        transactions occupy offsets the monitor never commits past. The offsets are asked by a
        client of the group that never joins it, the records read by one of another group: one
        reading in the monitor's group made its transactions fail (``ILLEGAL_GENERATION``).
        """
        s = self.settings
        inputs = [s.predictions_topic, s.shadow_scores_topic, s.outcomes_topic]
        inputs.append(s.applications_topic)
        asker = Consumer({**s.kafka_common(), "group.id": s.group_id})
        probe = Consumer(
            {
                **s.kafka_common(),
                "group.id": unique_name("monitor-probe"),
                # Partitions the monitor has no offset for: this group has none either.
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
        try:
            partitions = [
                TopicPartition(topic, partition)
                for topic in inputs
                for partition in probe.list_topics(topic, _KAFKA_TIMEOUT_S).topics[topic].partitions
            ]
            probe.assign(asker.committed(partitions, _KAFKA_TIMEOUT_S))
            return _all_at_end(probe, len(partitions))
        except KafkaException:
            return False
        finally:
            asker.close()
            probe.close()

    def wait_caught_up(self, timeout_s: float, poll_s: float = POLL_S) -> float:
        """Return once ``caught_up()``, the seconds it took (``wait_until``)."""
        failure = "the monitor did not catch up"
        return wait_until(self.caught_up, timeout_s, failure, watch=[self], poll_s=poll_s)

    def report(self, output: Path) -> Path:
        """``python -m monitor report`` into ``output`` (lines to its log); ``DevstackError`` if
        it fails."""
        arguments = ("report", "--output", str(output))
        report = ModuleProcess(self.module, self._env, self.log_path, *arguments)
        code = report.exit_code(_REPORT_TIMEOUT_S, "the monitor's report took too long")
        if code != 0 or not output.is_file():
            raise DevstackError(f"the monitor's report exited with {code}", self.log_path)
        return output


def _all_at_end(probe: Consumer, partitions: int) -> bool:
    """Whether each of the ``partitions`` assigned to ``probe`` ends before any record comes."""
    ended: set[tuple[str, int]] = set()
    deadline = time.monotonic() + _KAFKA_TIMEOUT_S
    while len(ended) < partitions:
        if time.monotonic() > deadline:
            return False
        for message in probe.consume(partitions, POLL_S):
            error = message.error()
            if error is None:
                return False  # a record the group has not committed
            if error.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(error)
            ended.add((message.topic() or "", message.partition() or 0))
    return True
