"""Screenshots of the Console tab running top, vi, less and a colour test against a real sshd + bash.

    python scripts/console_screens.py [OUTDIR]      (default: /tmp/siteline-console-shots)

Runs tests/gui/test_terminal_fullscreen.py and test_terminal_search.py (the find bar), test_terminal_flood.py under Xvfb
(xvfb-run) with the xcb platform, so the PNGs show real font rendering; then prints the paths to open.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/siteline-console-shots").resolve()
    env = {**os.environ, "SITELINE_CONSOLE_SHOTS": str(out), "QT_QPA_PLATFORM": "xcb"}
    command = ["xvfb-run", "-a", "-s", "-screen 0 1400x900x24", sys.executable, "-m", "pytest", "-q",
               "-p", "no:cacheprovider", "tests/gui/test_terminal_fullscreen.py", "tests/gui/test_terminal_search.py",
               "tests/gui/test_terminal_flood.py"]
    code = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    for png in sorted(out.glob("*.png")):
        print(png)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
