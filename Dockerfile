# One image for the scorer worker, training, the producer and the monitor (the first
# argument picks the job, default: worker), plus an `mlflow-server` target used by docker-compose.yml.
#
#   docker build -t rumos-credit-scorer .                        # the app (last stage)
#   docker build --target mlflow-server -t rumos-mlflow .        # MLflow + PostgreSQL driver
#
# Nothing from data/, mlruns/ or any secret is copied in (see .dockerignore); models are
# fetched from the MLflow registry at run time. The app runs as uid 10001 and writes only
# under /tmp, so it runs on a read-only root filesystem with a tmpfs (or volume) on /tmp.
#
# BuildKit is needed (RUN --mount); there is no `# syntax=` line, so the builder's own
# Dockerfile frontend is used and nothing is pulled for it (a Docker engine's embedded
# BuildKit works where no registry is reachable).

# The third-party base images are build arguments. By default they name the two stages
# below, which are the official images, pinned in FROM lines (where dependabot, which reads
# FROM lines but not ARG defaults, keeps their tags and digests current). On a machine
# without registry access scripts/containers passes local stand-ins instead (a Debian Python
# 3.11 and the same MLflow release; docs/deployment.md); BuildKit then never touches the
# official stages, as it skips every stage the target does not use.
ARG PYTHON_BASE_IMAGE=python-official
ARG MLFLOW_BASE_IMAGE=mlflow-official

FROM python:3.11-slim-trixie@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS python-official
FROM ghcr.io/mlflow/mlflow:v3.17.0 AS mlflow-official

# ---------------------------------------------------------------------------------------
# Build the virtual environment: dependencies first (their own cached layer, rebuilt only
# when pyproject.toml changes), then the project itself.
FROM ${PYTHON_BASE_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src

RUN python -m venv /opt/venv

COPY pyproject.toml ./
# pyproject.toml is the single dependency list: install its runtime dependencies (not the
# dev extras) before any source or README is copied, so a code or docs change reuses this
# layer.
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')"
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --requirement /tmp/requirements.txt

COPY README.md ./
COPY contracts ./contracts
COPY training ./training
COPY consumer ./consumer
COPY producer ./producer
COPY monitor ./monitor
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps .

# ---------------------------------------------------------------------------------------
# The MLflow tracking server for docker-compose.yml: the official image lacks a PostgreSQL
# driver and Flask-WTF (which MLflow's basic-auth app needs: `mlflow[auth]`), so this adds
# them, the auth app's configuration, and drops root. /mlartifacts (the artifact store) and
# /var/lib/mlflow-auth (the accounts database), named volumes in compose, are created here
# so the volumes inherit the non-root owner.
# Keep its minor version equal to the client's (pyproject pins mlflow 3.17.x;
# dependabot.yml holds it to patch updates).
FROM ${MLFLOW_BASE_IMAGE} AS mlflow-server

RUN --mount=type=cache,target=/root/.cache/pip \
    pip install psycopg2-binary==2.9.13 Flask-WTF==1.3.0 \
    && groupadd --system --gid 10001 mlflow \
    && useradd --system --uid 10001 --gid mlflow --no-create-home --home-dir /tmp --shell /usr/sbin/nologin mlflow \
    && mkdir /mlartifacts /var/lib/mlflow-auth \
    && chown mlflow:mlflow /mlartifacts /var/lib/mlflow-auth

COPY --chmod=0644 docker/mlflow-auth.ini /etc/mlflow/basic_auth.ini
ENV HOME=/tmp \
    MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/basic_auth.ini
USER 10001:10001
EXPOSE 5000
# /health needs no Host-header allow-listing; python's urllib because the image has no curl.
# The start period is long because failures during it do not count (the first success still
# marks it healthy at once): the server took over 4 min to start on a 2-core machine at load 25.
HEALTHCHECK --interval=5s --timeout=10s --start-period=300s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
ENTRYPOINT ["mlflow", "server"]
CMD ["--host", "0.0.0.0", "--port", "5000"]

# ---------------------------------------------------------------------------------------
# The application image (default target).
FROM ${PYTHON_BASE_IMAGE} AS runtime

ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="rumos-credit-scorer" \
      org.opencontainers.image.description="Event-driven credit-risk scorer: Kafka worker, training and producer in one image" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-trixie"

# Every writable path lives under /tmp: HOME, matplotlib's and other caches, and the
# worker's model cache. The worker's HTTP server listens on all interfaces in a container.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    SCORER_HTTP_HOST=0.0.0.0 \
    SCORER_MODEL_CACHE_DIR=/tmp/scorer-models

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/rumos
COPY --chmod=0644 docker/healthcheck.py /usr/local/lib/rumos/healthcheck.py

WORKDIR /app
USER 10001:10001
# The worker's ops server (/livez /readyz /metrics /model): SCORER_HTTP_PORT's default.
EXPOSE 8080
# A long start period costs nothing (the first success counts at once) and spares a worker that
# loads its model slowly on a busy machine from being marked unhealthy before it ever ran.
HEALTHCHECK --interval=10s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "/usr/local/lib/rumos/healthcheck.py"]
ENTRYPOINT ["/usr/local/bin/rumos"]
CMD ["worker"]
