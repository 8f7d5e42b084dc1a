"""Built-in plugin: the ModemManager probe (mmcli -L, -m N in all three output forms, --signal-get)."""
