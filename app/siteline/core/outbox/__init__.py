"""The outbox: a durable SQLite queue of everything Siteline did, waiting to reach the control plane.

Import the pieces from their modules (``siteline.core.outbox.store`` ...): this package does no work
at import time, so the sync and wire modules stay cheap to load.
"""
