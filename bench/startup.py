"""Start-up time and event-loop stalls, each against a reference measured in the same run.

    .venv/bin/python bench/startup.py [--runs N]

Prints:
- cold start to a shown window: Siteline (empty device list) vs a bare PySide6 QMainWindow;
- the demo's start-up: time until its three devices are up with their Overview filled, and the
  worst event-loop stall while that happened, vs the worst stall of an idle qasync loop over the
  same span (the timer's own jitter on this machine).
Every figure comes from a fresh process (QT_QPA_PLATFORM=offscreen unless a display is set).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BARE_QT = """
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
w = QMainWindow(); w.resize(1200, 800); w.show()
QTimer.singleShot(0, lambda: (print("READY", flush=True), app.quit()))
app.exec()
"""

SITELINE_EMPTY = """
from PySide6.QtCore import QTimer
from siteline.ui.app import run_gui
def ready(window):
    QTimer.singleShot(0, lambda: (print("READY", flush=True), window.close()))
raise SystemExit(run_gui(on_ready=ready))
"""


def _env(home: str) -> dict[str, str]:
    env = dict(os.environ, SITELINE_HOME=home)
    if not env.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def time_to_ready(code: str, runs: int) -> list[float]:
    """Wall time from process spawn to the child printing READY (includes interpreter start)."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as home:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-c", code],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=_env(home),
                text=True,
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.strip() == "READY":
                    times.append(time.perf_counter() - start)
                    break
            proc.wait(timeout=60)
            proc.stdout.close()
    return times


def demo_startup() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        out = subprocess.run(
            [sys.executable, str(HERE / "demo_probe.py")],
            capture_output=True,
            text=True,
            env=_env(home),
            timeout=240,
            check=False,
        )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise SystemExit(f"demo probe failed (exit {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    bare = statistics.median(time_to_ready(BARE_QT, args.runs))
    ours = statistics.median(time_to_ready(SITELINE_EMPTY, args.runs))
    print(f"cold start to window shown (median of {args.runs})")
    print(f"  bare PySide6 window   {bare * 1000:7.0f} ms   (reference)")
    print(f"  Siteline              {ours * 1000:7.0f} ms   ratio {ours / bare:.2f}x")

    demo = demo_startup()
    print("demo site start-up (3 devices: serial, SSH, MQTT)")
    print(f"  site processes ready  {demo['site_ready_s'] * 1000:7.0f} ms")
    print(f"  window shown          {demo['window_shown_s'] * 1000:7.0f} ms after the site was ready")
    print(f"  all devices up+filled {demo['all_up_s'] * 1000:7.0f} ms after the window was shown")
    print(f"  worst loop stall      {demo['worst_stall_s'] * 1000:7.1f} ms during that time")
    print(f"  idle loop worst       {demo['idle_worst_s'] * 1000:7.1f} ms over the same span (reference)")
    ratio = demo["worst_stall_s"] / demo["idle_worst_s"] if demo["idle_worst_s"] > 0 else float("inf")
    print(f"  ratio                 {ratio:7.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
