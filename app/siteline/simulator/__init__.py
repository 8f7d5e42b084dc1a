"""Simulated edge devices: the embedded default for `siteline demo`, training and tests."""
