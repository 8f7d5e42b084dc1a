"""Diagnostics bundles for support staff.

collect.py gathers over one open link, redact.py blanks secrets, archive.py writes the zip, outbox.py
queues a small one for the control plane.
"""
