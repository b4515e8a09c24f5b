"""librdkafka conventions every service shares: property values with their secrets masked
(revealed in one place, when a client is built) and the errors that mean bad credentials.

``KafkaProperties`` is the type of every ``*_KAFKA_EXTRA``-like setting: a JSON object of
librdkafka properties whose values under secret-looking keys (``sasl.password``,
``ssl.key.pem``, ...) become ``SecretStr``, so they never show in reprs, logs or HTTP output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

from confluent_kafka import KafkaError
from pydantic import AfterValidator, SecretStr

KafkaValue = str | int | float | bool | SecretStr
"""A librdkafka property value as configured (secrets wrapped)."""

# Substrings of librdkafka property names whose values are credentials
# (sasl.password, ssl.key.password, sasl.oauthbearer.client.secret, ssl.key.pem, ...).
_SECRET_KEY_MARKERS: Final = ("password", "secret", "passphrase", "token", ".pem", "config")

# librdkafka reports refused credentials and untrusted certificates only through error_cb
# and retries them forever: waiting never fixes them, so callers stop at the first one.
CREDENTIAL_ERRORS: Final = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL})


def _mask_secrets(properties: dict[str, KafkaValue]) -> dict[str, KafkaValue]:
    return {
        key: SecretStr(str(value))
        if any(marker in key for marker in _SECRET_KEY_MARKERS) and not isinstance(value, SecretStr)
        else value
        for key, value in properties.items()
    }


KafkaProperties = Annotated[dict[str, KafkaValue], AfterValidator(_mask_secrets)]
"""Extra librdkafka properties from settings, secrets masked."""


def reveal(properties: Mapping[str, KafkaValue]) -> dict[str, Any]:
    """``properties`` with every secret in clear, for a client's config: never log the result."""
    return {
        key: value.get_secret_value() if isinstance(value, SecretStr) else value
        for key, value in properties.items()
    }
