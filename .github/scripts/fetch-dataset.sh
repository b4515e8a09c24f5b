#!/usr/bin/env bash
# CI: download the credit-default CSV, which is never committed, to data/credit_default.csv
# (the path training and the tests read by default) and check its SHA-256.
#   DATA_URL     where to download it from (the RUMOS_DATA_URL secret; may be pre-signed)
#   DATA_SHA256  its expected SHA-256 (the RUMOS_DATA_SHA256 repository variable)
# Either missing is an error that names it: the tests need the real data, never a skip.
set -euo pipefail

if [ -z "${DATA_URL:-}" ]; then
    echo "::error::the dataset URL is not set: add the RUMOS_DATA_URL repository secret (docs/deployment.md)"
    exit 1
fi
if [ -z "${DATA_SHA256:-}" ]; then
    echo "::error::the dataset checksum is not set: add the RUMOS_DATA_SHA256 repository variable"
    exit 1
fi
mkdir -p data
curl --fail --silent --show-error --location --retry 3 --output data/credit_default.csv "$DATA_URL"
echo "$DATA_SHA256  data/credit_default.csv" | sha256sum --check --strict
