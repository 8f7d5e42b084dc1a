"""Where Siteline keeps its files: one function per kind, platformdirs underneath.

``SITELINE_HOME`` overrides everything (tests, the demo, portable installs): config, data,
state and cache then live in subfolders of that one directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "siteline"


def _base(kind: str) -> Path:
    override = os.environ.get("SITELINE_HOME")
    if override:
        path = Path(override).expanduser() / kind
    else:
        dirs = platformdirs.PlatformDirs(APP, appauthor=False)
        path = Path(
            {
                "config": dirs.user_config_dir,
                "data": dirs.user_data_dir,
                "state": dirs.user_state_dir,
                "cache": dirs.user_cache_dir,
            }[kind]
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    return _base("config")


def data_dir() -> Path:
    return _base("data")


def state_dir() -> Path:
    return _base("state")


def cache_dir() -> Path:
    return _base("cache")
