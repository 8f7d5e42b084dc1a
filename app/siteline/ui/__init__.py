"""The desktop window (PySide6). Holds no protocol or parsing logic: it calls core and shows typed results."""
