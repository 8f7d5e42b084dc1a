"""Built-in plugin: A/B slots from RAUC, U-Boot (fw_printenv) and GRUB (grub-editenv) — parsers for now."""
