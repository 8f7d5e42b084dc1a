"""Secrets out of everything a diagnostics bundle holds: logs, config files, probe JSON, Siteline's own log.

A bundle goes to support staff and maybe the control plane, so every member's text passes :func:`redact_text`
before it is written. The rules err on the side of blanking, and each one is counted (the manifest says what
was blanked how many times, never what it was):

- ``pem``: private key blocks (``-----BEGIN ... PRIVATE KEY-----`` to its END line, or to the end of the text
  when the END line was cut off);
- ``value``: ``name=value``, ``name: value``, ``"name": "value"`` and ``name value`` config lines whose name
  holds a secret (password, psk, token, secret, wpa_passphrase, PrivateKey, ...); yes/no/true/false/0/1 stay;
- ``url-login``: the password in ``scheme://user:password@host``;
- ``bearer``: ``Authorization: Bearer ...`` / ``Basic ...``;
- ``identifier``: IMEI, ICCID and IMSI masked as the GUI masks the IMEI (first 8 digits kept);
- ``command``: what :func:`siteline.core.redact.redact_command` finds in a command line (``sshpass -p x``, ...).

Never raises: any text goes in, text comes out (a rule that fails blanks the whole text).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from siteline.core.redact import BLANK, is_secret_name, redact_command

__all__ = ["BLANK", "Redacted", "Redactor", "mask_digits", "redact_text"]

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*)-----.*?(?:-----END [A-Z0-9 ]*-----|\Z)", re.DOTALL)
# name (maybe quoted) = or : value (quoted or a bare word). The name may hold dots (nmcli's
# 802-11-wireless-security.psk) and dashes.
_ASSIGNED = re.compile(
    r"""(?P<q>["']?)(?P<name>[A-Za-z0-9_][\w.-]*)(?P=q)(?P<sep>[ \t]*[:=][ \t]*)"""
    r"""(?P<val>"(?:[^"\\\n]|\\.)*"?|'[^'\n]*'?|[^\s,;'"}\]]+)"""
)
# A config line "name value" (mosquitto.conf's ``password x``, wpa_supplicant's quoted psk has '=').
_SPACED = re.compile(r"^(?P<lead>[ \t]*)(?P<name>[A-Za-z_][\w.-]*)(?P<sep>[ \t]+)(?P<val>[^\s#]+)[ \t]*$", re.MULTILINE)
_URL_LOGIN = re.compile(r"([a-zA-Z][\w+.-]*://[^\s/:@'\"]*:)([^\s@'\"/]+)@")
_BEARER = re.compile(r"\b(Bearer|Basic|Token)([ \t]+)([A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
_ID_LABEL = re.compile(
    r"(imei|iccid|imsi|equipment[-_ ]identifier|sim[-_ ]identifier|subscriber[-_ ]identity|equipment-id)"
    r"([^0-9\n]{0,12}?)(\d{14,20})\b", re.IGNORECASE)
_LONE_DIGITS = re.compile(r"(?<![\d.])(\d{15}|89\d{17,18})(?![\d.])")
_COMMAND_LIKE = re.compile(r"(?:^|\s)-{1,2}[A-Za-z]|pass:|<<<|\|")
_HARMLESS = {"yes", "no", "true", "false", "on", "off", "0", "1", "none", "null", "", "''", '""', BLANK,
             f'"{BLANK}"', f"'{BLANK}'", "2"}
# Names a config uses for a secret that the command-line rules do not know (they avoid one-word "key").
_EXTRA_NAMES = {"key", "psk", "pin", "puk", "privatekey", "presharedkey", "wpapassphrase", "wpapsk", "saepassword",
                "auth", "authkey", "wepkey0", "wepkey1", "wepkey2", "wepkey3", "passphrase", "credentials", "secret"}
_NOT_SECRET = {"passwordauthentication", "kbdinteractiveauthentication", "challengeresponseauthentication",
               "permitemptypasswords", "pubkeyauthentication", "keymgmt", "pskflags", "passwordflags",
               "authenticationmethods", "keyboard", "keytype", "keysize", "tokentype"}


def _folded(name: str) -> str:
    return re.sub(r"[-_.]", "", name.rsplit(".", 1)[-1].lower())


def secret_name(name: str) -> bool:
    """A config or JSON field name that holds a secret (psk, password, PrivateKey, mqtt_token ...)."""
    folded = _folded(name)
    if folded in _NOT_SECRET or folded.endswith(("flags", "authentication", "type", "file", "path", "ref")):
        return False  # the setting's kind or where the secret lives, not the secret
    return folded in _EXTRA_NAMES or folded.endswith(("privatekey", "presharedkey")) or is_secret_name(name)


def mask_digits(digits: str) -> str:
    """An IMEI/ICCID/IMSI as the GUI shows an IMEI: the first 8 digits, the rest as '*'."""
    return digits[:8] + "*" * max(0, len(digits) - 8)


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


@dataclass(frozen=True)
class Redacted:
    text: str
    counts: dict[str, int] = field(default_factory=dict)


class Redactor:
    """Redacts text after text and keeps the running counts per rule (for the manifest)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def text(self, text: str) -> str:
        done = redact_text(text)
        self.counts.update(done.counts)
        return done.text


def _blank_value(value: str) -> str:
    if len(value) >= 2 and value[0] in "\"'" and value.endswith(value[0]):
        return value[0] + BLANK + value[0]
    if value[:1] in "\"'":
        return value[0] + BLANK
    return BLANK


def _pass(counts: Counter[str], rule: str, pattern: re.Pattern[str], text: str, replace: object) -> str:
    def sub(match: re.Match[str]) -> str:
        new = replace(match) if callable(replace) else str(replace)
        if new != match.group(0):
            counts[rule] += 1
        return new

    return pattern.sub(sub, text)


def _assigned(match: re.Match[str]) -> str:
    value, name = match.group("val"), match.group("name")
    if _folded(name) == "key" and "=" not in match.group("sep"):
        return match.group(0)  # "key": "luks" in JSON is a field's name; a bare key= in a config is a secret
    bare = value.strip("\"'").lower()
    if not secret_name(name) or bare in _HARMLESS or value in _HARMLESS or _folded(bare) in _NOT_SECRET:
        return match.group(0)  # a flag, or the name of a setting ("ssh_passwords: passwordauthentication yes")
    return f"{match.group('q')}{match.group('name')}{match.group('q')}{match.group('sep')}{_blank_value(value)}"


def _assignments(counts: Counter[str], text: str) -> str:
    """Like _pass with _assigned, but a name that is not a secret gives back its value to be looked at again:
    in "ValueError: password=x" the value "password=x" holds an assignment of its own."""
    out: list[str] = []
    pos = 0
    while (match := _ASSIGNED.search(text, pos)) is not None:
        new = _assigned(match)
        if new == match.group(0):
            resume = match.start("val")
            out.append(text[pos:resume])
            pos = resume
            continue
        counts["value"] += 1
        out.append(text[pos:match.start()] + new)
        pos = match.end()
    out.append(text[pos:])
    return "".join(out)


def _spaced(match: re.Match[str]) -> str:
    value = match.group("val")
    if not secret_name(match.group("name")) or value.lower() in _HARMLESS:
        return match.group(0)
    return f"{match.group('lead')}{match.group('name')}{match.group('sep')}{BLANK}"


def _lone_digits(match: re.Match[str]) -> str:
    digits = match.group(1)
    if len(digits) == 15 and not _luhn(digits):
        return digits  # an IMEI has a Luhn check digit; other 15-digit numbers (times, counters) stay
    return mask_digits(digits)


def _commands(counts: Counter[str], text: str) -> str:
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if len(line) > 4000 or not _COMMAND_LIKE.search(line):
            continue  # no option, pipe or pass: for a command-line secret to hang on; long lines are data
        head, mark, tail = line.rpartition("COMMAND=")  # sudo's log: the command line follows this
        new, changed = redact_command(tail if mark else line)
        if changed:
            counts["command"] += 1
            lines[index] = head + mark + new if mark else new
    return "\n".join(lines)


def _redact(text: str, counts: Counter[str]) -> str:
    text = _pass(counts, "pem", _PEM, text,
                 lambda m: f"-----BEGIN {m.group(1)}-----\n{BLANK}\n-----END {m.group(1)}-----")
    text = _pass(counts, "url-login", _URL_LOGIN, text, lambda m: f"{m.group(1)}{BLANK}@")
    text = _pass(counts, "bearer", _BEARER, text, lambda m: f"{m.group(1)}{m.group(2)}{BLANK}")
    text = _assignments(counts, text)
    text = _pass(counts, "value", _SPACED, text, _spaced)
    text = _pass(counts, "identifier", _ID_LABEL, text, lambda m: m.group(1) + m.group(2) + mask_digits(m.group(3)))
    text = _pass(counts, "identifier", _LONE_DIGITS, text, _lone_digits)
    return _commands(counts, text)


def redact_text(text: str) -> Redacted:
    """``text`` with every secret the rules know blanked, and how many of each rule fired."""
    counts: Counter[str] = Counter()
    try:
        done = _redact(text, counts)
    except (ValueError, IndexError, RecursionError, re.error):  # never expected: keep the text out entirely
        return Redacted(BLANK, {"unreadable": 1})
    return Redacted(done, dict(counts))
