"""Siteline: the field technician's tool for edge and IoT Linux devices."""

__version__ = "0.1.0"
