#!/bin/sh
# One-shot topic creation for docker-compose.yml (runs in the apache/kafka image).
# TOPICS is a space-separated list of NAME:PARTITIONS; existing topics are left alone,
# so `docker compose up` can be repeated. Single broker, so replication factor 1.
set -eu

: "${BOOTSTRAP_SERVER:?set BOOTSTRAP_SERVER (host:port of the broker)}"
: "${TOPICS:?set TOPICS (NAME:PARTITIONS ...)}"
kafka_topics=/opt/kafka/bin/kafka-topics.sh

for spec in $TOPICS; do
    name=${spec%%:*}
    partitions=${spec#*:}
    "$kafka_topics" --bootstrap-server "$BOOTSTRAP_SERVER" --create --if-not-exists \
        --topic "$name" --partitions "$partitions" --replication-factor 1 \
        --config min.insync.replicas=1
done
"$kafka_topics" --bootstrap-server "$BOOTSTRAP_SERVER" --describe
