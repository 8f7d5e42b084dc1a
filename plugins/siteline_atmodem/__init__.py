"""Built-in plugin: modems without ModemManager, read with 3GPP TS 27.007 AT commands on their serial port."""
