"""The plugin API: everything a Siteline plugin may import, and nothing else.

A plugin is a module or package registered in the ``siteline.plugins`` entry-point group that
implements some of the hooks below with ``@hookimpl``::

    from siteline.api import hookimpl

    @hookimpl
    def siteline_probes():
        return [MyProbe()]
"""

from siteline.core.device.system import OsRelease, System
from siteline.core.plugin_api import (
    DeviceContext,
    PanelSpec,
    Probe,
    ProbeKind,
    UpdateBackend,
    hookimpl,
)
from siteline.core.transports.base import Result

__all__ = [
    "DeviceContext",
    "OsRelease",
    "PanelSpec",
    "Probe",
    "ProbeKind",
    "Result",
    "System",
    "UpdateBackend",
    "hookimpl",
]
