#!/usr/bin/env bash
# CI: data/credit_default.csv (never committed), the path training and the tests read.
#   DATA_URL     where to download the real dataset (the RUMOS_DATA_URL secret; may be pre-signed)
#   DATA_SHA256  its expected SHA-256 (the RUMOS_DATA_SHA256 repository variable)
# With DATA_URL set, the real file is downloaded and must match DATA_SHA256. Without it (a fork,
# a pull request from one), a made-up dataset in the same layout is generated
# (scripts/synthetic_dataset.py, producer.synthetic), so every job that only needs some data stays green;
# REQUIRE_REAL_DATA=true (the real-data job) makes a missing secret an error instead.
set -euo pipefail

mkdir -p data
if [ -z "${DATA_URL:-}" ]; then
    if [ "${REQUIRE_REAL_DATA:-false}" = true ]; then
        echo "::error::the dataset URL is not set: add the RUMOS_DATA_URL repository secret (docs/deployment.md)"
        exit 1
    fi
    echo "::notice::RUMOS_DATA_URL is not set: these tests run on a made-up dataset"
    "${PYTHON:-.venv/bin/python}" -m scripts.synthetic_dataset data/credit_default.csv
    exit 0
fi
if [ -z "${DATA_SHA256:-}" ]; then
    echo "::error::the dataset checksum is not set: add the RUMOS_DATA_SHA256 repository variable"
    exit 1
fi
curl --fail --silent --show-error --location --retry 3 --output data/credit_default.csv "$DATA_URL"
echo "$DATA_SHA256  data/credit_default.csv" | sha256sum --check --strict
