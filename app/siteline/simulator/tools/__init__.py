"""The device's command-line tools, one module per family; each exposes ``main(tool, argv, state) -> int``."""
