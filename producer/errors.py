"""The producer package's exceptions: everything it raises derives from ``ProducerError``."""

from __future__ import annotations


class ProducerError(Exception):
    """Root of every error raised by the ``producer`` package."""


class SourceError(ProducerError):
    """A source file cannot be read as a whole: missing, unreadable, malformed or wrong layout.

    Individual bad rows are not errors: readers yield them as ``InvalidRecord``.
    """


class KafkaClientError(ProducerError):
    """Kafka refused the configuration, is unreachable, or reported a fatal error."""
