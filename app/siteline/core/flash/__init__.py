"""Flashing a device and rolling it back: the job (persisted, resumable), its steps, site rollouts."""
