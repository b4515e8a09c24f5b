"""Publish loan applications to Kafka and follow their scores.

Programmatic API (the CLI, the demo and the benchmarks use the same)::

    from producer import create_producer, publish, read_csv_applications, Settings

    report = publish(read_csv_applications(path), producer=create_producer(Settings()))
    assert report.complete, report.failures
"""

from producer.encoding import encode_application, encode_outcome, restamp_encoded
from producer.errors import KafkaClientError, ProducerError, SourceError
from producer.following import FollowReport, KafkaConsumerLike, ReceivedScore, follow_scores
from producer.kafka import create_consumer, create_producer, ensure_topic
from producer.pacing import TokenBucket
from producer.publishing import KafkaProducerLike, Publishable, PublishReport, publish
from producer.records import InvalidRecord, Issue, Record, RecordSource
from producer.settings import Settings
from producer.sources import CSV_ID_PREFIX, read_csv_applications, read_csv_outcomes, read_jsonl
from producer.synthetic import SYNTHETIC_ID_PREFIX, synthetic_applications

__all__ = [
    "CSV_ID_PREFIX",
    "SYNTHETIC_ID_PREFIX",
    "FollowReport",
    "InvalidRecord",
    "Issue",
    "KafkaClientError",
    "KafkaConsumerLike",
    "KafkaProducerLike",
    "ProducerError",
    "PublishReport",
    "Publishable",
    "ReceivedScore",
    "Record",
    "RecordSource",
    "Settings",
    "SourceError",
    "TokenBucket",
    "create_consumer",
    "create_producer",
    "encode_application",
    "encode_outcome",
    "ensure_topic",
    "follow_scores",
    "publish",
    "read_csv_applications",
    "read_csv_outcomes",
    "read_jsonl",
    "restamp_encoded",
    "synthetic_applications",
]
