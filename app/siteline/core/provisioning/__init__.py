"""Offline provisioning of a new device at install time (issue 7): a profile, eight idempotent steps, one job."""
