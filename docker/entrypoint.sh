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
# The model's aliases, not an alias lookup: an authenticating registry answers a lookup on a
# model that does not exist yet with 403, which must not read as "do not train".
champion_status() {
    python -c '
import os
import sys
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from contracts.model_names import CHAMPION_ALIAS, MODEL_NAME
from contracts.registry_access import access_refusal
try:
    aliases = MlflowClient().get_registered_model(MODEL_NAME).aliases
except MlflowException as exc:
    if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
        where = os.environ.get("MLFLOW_TRACKING_URI", "the tracking server")
        refusal = access_refusal(exc, where, os.environ.get("MLFLOW_TRACKING_USERNAME"))
        if refusal:
            sys.exit(refusal)
        raise
    aliases = {}
if CHAMPION_ALIAS not in aliases:
    print(f"no champion: models:/{MODEL_NAME}@{CHAMPION_ALIAS} does not resolve")
    sys.exit(3)
print(f"champion exists: models:/{MODEL_NAME}@{CHAMPION_ALIAS} is version {aliases[CHAMPION_ALIAS]}")
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
