#!/usr/bin/env bash
# End-to-end smoke test through docker-compose.yml, run by CI on images it has just built
# (SCORER_IMAGE, MLFLOW_IMAGE): bring the stack up (Kafka, topics, PostgreSQL, MLflow,
# trainer, scorer), publish SMOKE_COUNT synthetic applications from a producer container,
# and require exactly that many scores back within SMOKE_TIMEOUT_S seconds.
# Needs data/credit_default.csv (or RUMOS_DATA_DIR) for the trainer. Leaves the stack up;
# `docker compose down --volumes` removes it. On failure, prints the services' logs.
set -euo pipefail

count=${SMOKE_COUNT:-100}
timeout_s=${SMOKE_TIMEOUT_S:-600}
scores_file=${SMOKE_SCORES_FILE:-smoke-scores.jsonl}
# A throw-away database password unless the caller set one.
POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
export POSTGRES_PASSWORD

compose() {
    docker compose --file docker-compose.yml "$@"
}

on_exit() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        echo "smoke test failed (exit $status); service states and logs follow" >&2
        compose ps --all >&2 || true
        compose logs --no-color --tail=200 >&2 || true
    fi
}
trap on_exit EXIT

# `up` returns once the scorer is created, i.e. after Kafka and MLflow are healthy, the
# topics exist and the trainer has exited 0 (depends_on conditions).
compose up --detach --no-build scorer

deadline=$((SECONDS + timeout_s))
scorer=$(compose ps --quiet scorer)
until [ "$(docker inspect --format '{{.State.Health.Status}}' "$scorer")" = healthy ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "scorer not healthy after ${timeout_s}s" >&2
        exit 1
    fi
    sleep 2 # poll interval of the readiness check above
done
echo "scorer is healthy"

compose run --rm --no-deps -T producer publish --synthetic --count "$count" --seed 7
compose run --rm --no-deps -T follower follow --from-beginning --count "$count" \
    --timeout "$timeout_s" --format json >"$scores_file"

received=$(wc -l <"$scores_file")
if [ "$received" -ne "$count" ]; then
    echo "expected $count scores, received $received" >&2
    exit 1
fi
echo "smoke test passed: $count applications published, $received scores received"
