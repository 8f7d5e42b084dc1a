"""Child process of bench/startup.py: start the demo site, open the GUI on it, time it, print RESULT."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from siteline import paths
from siteline.core.loopwatch import LoopWatch
from siteline.simulator.demo import start_site
from siteline.ui.app import overview_ready, run_gui

TIMEOUT = 120.0


def main() -> int:
    t0 = time.monotonic()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="siteline-bench-") as folder:
        site = start_site(Path(folder))
        os.environ["SITELINE_HOME"] = str(Path(folder) / "home")  # never the technician's own lists
        site.pin_host_keys(paths.data_dir() / "known_hosts")
        try:
            figures["site_ready_s"] = time.monotonic() - t0
            shown_at = 0.0

            async def measure(window) -> None:  # type: ignore[no-untyped-def]
                deadline = time.monotonic() + TIMEOUT
                # Polling, not an event: readiness spans several sessions and the page's own state.
                while not overview_ready(window) and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                figures["all_up_s"] = time.monotonic() - shown_at
                figures["worst_stall_s"] = window.loopwatch.worst_stall
                figures["timed_out"] = float(not overview_ready(window))
                # The reference: the same loop, same window, nothing starting, over the same span.
                idle = LoopWatch(threshold=2.0)
                idle.start()
                await asyncio.sleep(max(1.0, figures["all_up_s"]))
                await idle.stop()
                figures["idle_worst_s"] = idle.worst_stall
                window.close()

            def ready(window) -> None:  # type: ignore[no-untyped-def]
                nonlocal shown_at
                shown_at = time.monotonic()
                figures["window_shown_s"] = shown_at - t0 - figures["site_ready_s"]
                asyncio.get_running_loop().create_task(measure(window))

            run_gui(site.entries(), title="Siteline — bench", on_ready=ready)
        finally:
            site.stop()
    print("RESULT " + json.dumps(figures), flush=True)
    return 0 if not figures.get("timed_out") else 1


if __name__ == "__main__":
    raise SystemExit(main())
