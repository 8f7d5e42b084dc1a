"""Built-in plugin: NetworkManager links, autoconnect priorities and the default route (wired vs cellular)."""
