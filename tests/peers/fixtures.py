"""pytest fixtures that start real peers. Registered from tests/conftest.py."""
