"""Text fit to show or log: URLs without the login someone typed into them."""

from __future__ import annotations


def safe_url(url: str) -> str:
    """``url`` fit to quote in a message: without a user name or password (``mqtts://jane:pw@host`` ->
    ``mqtts://host``), even when the rest does not parse, and cut to 80 characters. Everything up to the last
    '@' goes: a password may hold '/', ':' or '@' itself, and a broker URL has no path worth keeping."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "", scheme
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"[:80]
