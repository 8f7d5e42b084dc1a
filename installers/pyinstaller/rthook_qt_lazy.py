# PyInstaller run-time hook, in place of PyInstaller's pyi_rth_pyside6: that one imports PySide6.QtCore (Qt and
# its 32 MB ICU data) in every start of the bundle, only to write a qt.conf the PySide6 wheel writes itself when
# it is imported. Siteline's bundle also runs as `siteline -m ...` for every simulated device command and
# helper process, and most of those never touch Qt: here only the environment is set; Qt loads when used.
import os
import sys


def _siteline_qt_paths() -> None:
    if sys.platform.startswith("win"):
        qt = os.path.join(sys._MEIPASS, "PySide6")
        os.environ["PATH"] = sys._MEIPASS + os.pathsep + os.environ.get("PATH", "")
    else:
        qt = os.path.join(sys._MEIPASS, "PySide6", "Qt")
    os.environ["QT_PLUGIN_PATH"] = os.path.join(qt, "plugins")
    os.environ["QML2_IMPORT_PATH"] = os.path.join(qt, "qml")


_siteline_qt_paths()
del _siteline_qt_paths
