"""The image's HEALTHCHECK: exit 0 when the worker's ``/healthz`` answers 200, else 1.

Reads the port the worker reads (``SCORER_HTTP_PORT``, default from the worker's own
Settings), and uses urllib because the slim base image has no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from consumer.settings import ENV_PREFIX, Settings

_TIMEOUT_S = 4.0


def _port() -> int:
    configured = os.environ.get(f"{ENV_PREFIX}HTTP_PORT")
    return int(configured) if configured else int(Settings.model_fields["http_port"].default)


def main() -> int:
    url = f"http://127.0.0.1:{_port()}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
