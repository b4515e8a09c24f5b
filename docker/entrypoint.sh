#!/bin/sh
# The image's entry point: the first argument picks the job, the rest go to it.
#
#   worker [ARGS]                  python -m consumer      (the default)
#   train [ARGS]                   python -m training
#   train-if-no-champion [ARGS]    python -m training, unless the registry already has a
#                                  champion (models:/credit-default@champion resolves)
#   producer publish|follow ...    python -m producer
#   publish ... / follow ...       the same, shorter: python -m producer publish|follow
#   monitor [ARGS]                 python -m monitor       (drift, live performance, alerts)
#   anything else                  run as a command (e.g. `python -c ...`, `sh`)
set -eu

job=${1:-worker}
[ "$#" -gt 0 ] && shift

# Exit 0 when the champion alias resolves, 3 when the registry has no such model or alias;
# any other failure (tracking server unreachable, bad credentials) is an error, never a
# reason to train.
champion_status() {
    python -c '
import sys
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from contracts.model_names import CHAMPION_ALIAS, MODEL_NAME
try:
    version = MlflowClient().get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
except MlflowException as exc:
    if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
        print(f"no champion: models:/{MODEL_NAME}@{CHAMPION_ALIAS} does not resolve")
        sys.exit(3)
    raise
print(f"champion exists: models:/{MODEL_NAME}@{CHAMPION_ALIAS} is version {version.version}")
'
}

case "$job" in
    worker)
        exec python -m consumer "$@"
        ;;
    train)
        exec python -m training "$@"
        ;;
    train-if-no-champion)
        status=0
        champion_status || status=$?
        case "$status" in
            0) exit 0 ;;
            3) exec python -m training "$@" ;;
            *) echo "rumos: could not ask the registry for a champion (exit $status)" >&2
               exit "$status" ;;
        esac
        ;;
    producer)
        exec python -m producer "$@"
        ;;
    publish | follow)
        exec python -m producer "$job" "$@"
        ;;
    monitor)
        exec python -m monitor "$@"
        ;;
    *)
        exec "$job" "$@"
        ;;
esac
