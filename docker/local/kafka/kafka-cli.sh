#!/bin/sh
# Kafka's command-line tools in the local Kafka image, under the names and paths of the
# official image (/opt/kafka/bin/kafka-topics.sh, ...): each name is a link to this script,
# which runs the tool's class (the one the official bin/ script runs) from /opt/kafka/libs.
set -eu

name=$(basename "$0" .sh)
case $name in
  kafka-topics) class=org.apache.kafka.tools.TopicCommand ;;
  kafka-broker-api-versions) class=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
  kafka-storage) class=kafka.tools.StorageTool ;;
  kafka-configs) class=kafka.admin.ConfigCommand ;;
  kafka-consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  kafka-console-producer) class=org.apache.kafka.tools.ConsoleProducer ;;
  kafka-console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  kafka-transactions) class=org.apache.kafka.tools.TransactionsCommand ;;
  kafka-metadata-quorum) class=org.apache.kafka.tools.MetadataQuorumCommand ;;
  kafka-get-offsets) class=org.apache.kafka.tools.GetOffsetShell ;;
  *)
    echo "kafka-cli: no tool named $name" >&2
    exit 2
    ;;
esac

# A short-lived JVM: the C1 compiler alone and the serial GC start it fastest (as
# scripts/kafka-local formats its storage). Logs at WARN to stderr, as the official tools do.
# shellcheck disable=SC2086  # KAFKA_OPTS is a word list, as in the official scripts
exec java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
  ${KAFKA_OPTS:-} -Dlog4j2.configurationFile=/etc/kafka/docker/tools-log4j2.xml \
  -cp '/opt/kafka/libs/*' "$class" "$@"
