"""Records the monitor writes, and their JSON form while they wait in the store's outbox. Pure.

Values and headers may be any bytes (a dead letter copies its input byte for byte), so
they are kept as base64 and come back exactly.
"""

from __future__ import annotations

import base64
import json

from consumer.records import Headers, OutboundRecord
from contracts.alert import ModelAlert


def alert_record(alert: ModelAlert, topic: str) -> OutboundRecord:
    return OutboundRecord(topic, alert.subject.encode(), alert.model_dump_json().encode(), [])


def to_outbox(record: OutboundRecord) -> str:
    return json.dumps(
        {
            "topic": record.topic,
            "key": _b64(record.key),
            "value": _b64(record.value),
            "headers": [[name, _b64(_as_bytes(value))] for name, value in record.headers],
        }
    )


def from_outbox(text: str) -> OutboundRecord:
    data = json.loads(text)
    headers: Headers = [(name, _unb64(value)) for name, value in data["headers"]]
    return OutboundRecord(data["topic"], _unb64(data["key"]), _unb64(data["value"]), headers)


def _as_bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)
