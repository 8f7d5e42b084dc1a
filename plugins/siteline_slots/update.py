"""Update backends: how an uploaded image is installed into the inactive slot on the device."""

from __future__ import annotations

import shlex

from siteline.api import DeviceContext

DETECT_TIMEOUT = 10.0


class RaucBackend:
    """``rauc install``: RAUC picks the inactive slot, writes it and marks it primary itself."""

    name = "rauc"
    formats: tuple[str, ...] = ("raucb",)

    async def detect(self, ctx: DeviceContext) -> bool:
        result = await ctx.run("command -v rauc >/dev/null 2>&1 && rauc --version", DETECT_TIMEOUT)
        return result.exit_code == 0

    def install_command(self, remote_path: str, target_slot: str | None) -> str:
        return f"rauc install {shlex.quote(remote_path)}"
