"""The image's HEALTHCHECK: exit 0 when the worker's ``/livez`` answers 200, else 1.

``/livez`` fails while the worker runs but cannot consume (see ``consumer.liveness``),
not only when the process is gone. Docker itself only marks such a container
unhealthy; the worker exits on its own (code 4) if replacing its Kafka clients does
not help, which the compose ``restart`` policy acts on, and Kubernetes restarts on a
failing ``livenessProbe`` at once. Reads the port the worker reads
(``SCORER_HTTP_PORT``, default from the worker's own Settings), and uses urllib
because the slim base image has no curl.
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
    url = f"http://127.0.0.1:{_port()}/livez"
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:  # 503: the body says why
        print(
            f"unhealthy: {url}: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr
        )
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
