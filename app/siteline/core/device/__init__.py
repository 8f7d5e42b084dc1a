"""Typed snapshots of what a device reports."""
