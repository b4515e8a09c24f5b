"""Hostile-input corpus and the decoder fuzz target (``scripts/fuzz-decoder`` runs it)."""
