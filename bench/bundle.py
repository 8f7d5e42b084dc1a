"""The Linux bundle's size and start-up time, against the venv in the same run.

    .venv/bin/python bench/bundle.py [--bundle dist/siteline] [-n 7] [--gui-runs 3]

Prints: the bundle folder's size, the .deb and .tar.gz next to it, the 10 biggest files; `siteline --version`
from the bundle and from .venv (first run, then the median of N); the GUI's start to its first window shown
offscreen (wall clock from spawn to the app's "window shown" log line, median), bundle vs venv.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHOWN = re.compile(r"window shown (\d+) ms after start")


def human(size: int) -> str:
    return f"{size / 1e6:7.1f} MB"


def folder_size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def report_sizes(bundle: Path) -> None:
    print(f"bundle folder   {human(folder_size(bundle))}  {bundle}")
    for pattern in ("siteline_*_amd64.deb", "siteline-*-linux-x86_64.tar.gz", "Siteline-*.AppImage"):
        for path in sorted(bundle.parent.glob(pattern)):
            print(f"{path.suffix[1:]:<15} {human(path.stat().st_size)}  {path.name}")
    files = sorted((p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()),
                   key=lambda p: p.stat().st_size, reverse=True)
    print("biggest 10 files:")
    for path in files[:10]:
        print(f"  {human(path.stat().st_size)}  {path.relative_to(bundle)}")


def clean_env(home: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SITELINE_", "QT_"))}
    return {**keep, "SITELINE_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}


def time_version(exe: Path, runs: int, env: dict[str, str]) -> tuple[float, float]:
    """(first run, median of the rest) of `exe --version`, in ms."""
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        subprocess.run([str(exe), "--version"], check=True, capture_output=True, env=env, timeout=60)
        times.append((time.perf_counter() - start) * 1000)
    return times[0], statistics.median(times[1:])


def time_gui(exe: Path, env: dict[str, str], shot: Path) -> tuple[float, int]:
    """(ms from spawn to the "window shown" line, the app's own figure) for one offscreen GUI start."""
    env = {**env, "SITELINE_SCREENSHOT": str(shot), "SITELINE_QUIT_AFTER_SCREENSHOT": "1",
           "SITELINE_SCREENSHOT_WHEN": "shown"}
    start = time.perf_counter()
    proc = subprocess.Popen([str(exe), "-v", "gui"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    buf, found = b"", None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while found is None and sel.select(60):
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            found = SHOWN.search(buf.decode(errors="replace"))
    wall = (time.perf_counter() - start) * 1000
    proc.communicate(timeout=60)
    if found is None:
        raise SystemExit(f"{exe}: no 'window shown' line; stderr: {buf.decode(errors='replace')[-2000:]}")
    return wall, int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=REPO / "dist" / "siteline")
    parser.add_argument("--venv", type=Path, default=REPO / ".venv")
    parser.add_argument("-n", type=int, default=7, help="runs of `siteline --version` (after one first run)")
    parser.add_argument("--gui-runs", type=int, default=3)
    args = parser.parse_args()
    bundle_exe, venv_exe = args.bundle / "siteline", args.venv / "bin" / "siteline"
    for exe in (bundle_exe, venv_exe):
        if not exe.is_file():
            raise SystemExit(f"{exe} is missing (build the bundle with installers/linux/build.sh)")
    report_sizes(args.bundle)
    with tempfile.TemporaryDirectory(prefix="siteline-bench-") as tmp:
        env = clean_env(Path(tmp))
        print(f"`siteline --version` (first run, then median of {args.n}):")
        results = {}
        for label, exe in (("bundle", bundle_exe), ("venv", venv_exe)):
            first, median = time_version(exe, args.n, env)
            results[label] = median
            print(f"  {label:<7} first {first:6.0f} ms   median {median:6.0f} ms")
        print(f"  ratio bundle/venv: {results['bundle'] / results['venv']:.2f}")
        print(f"GUI start to first window shown, offscreen (median of {args.gui_runs}; the app's own figure):")
        gui = {}
        for label, exe in (("bundle", bundle_exe), ("venv", venv_exe)):
            runs = [time_gui(exe, env, Path(tmp) / f"{label}.png") for _ in range(args.gui_runs)]
            gui[label] = statistics.median(r[0] for r in runs)
            own = statistics.median(r[1] for r in runs)
            print(f"  {label:<7} {gui[label]:6.0f} ms from spawn   (window shown {own:.0f} ms after run_window)")
        print(f"  ratio bundle/venv: {gui['bundle'] / gui['venv']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
