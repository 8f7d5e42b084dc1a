"""PyInstaller's script: the bundle's `siteline` program (see siteline/frozen.py for what it accepts)."""

import sys

from siteline.frozen import main

if __name__ == "__main__":
    sys.exit(main())
