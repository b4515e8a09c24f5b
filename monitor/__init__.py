"""The model monitor: drift against the training profile, live performance once outcomes
arrive, alerts when a limit is crossed (``python -m monitor``)."""
