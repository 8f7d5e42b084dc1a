"""Icons from resources/icons, loaded once per name (QIcon needs a QGuiApplication to exist)."""

from __future__ import annotations

import logging
from functools import cache

from PySide6.QtGui import QIcon

from siteline.core.targets import Target
from siteline.core.transports.base import ConnState
from siteline.resources import ResourceError, resource_path

log = logging.getLogger(__name__)


@cache
def icon(name: str) -> QIcon:
    try:
        return QIcon(str(resource_path(f"icons/{name}.svg")))
    except ResourceError as exc:
        log.warning("%s", exc)
        return QIcon()


def state_icon(state: ConnState) -> QIcon:
    return icon(f"state-{state.value}")


def transport_icon(target: Target) -> QIcon:
    kind = "mqtt" if target.is_mqtt else target.scheme
    return icon(f"transport-{kind}")
