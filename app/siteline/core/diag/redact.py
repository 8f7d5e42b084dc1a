"""Secrets out of everything a diagnostics bundle holds: logs, config files, probe JSON, Siteline's own log.

A bundle goes to support staff and maybe the control plane, so every member's text passes :func:`redact_text`
before it is written. The rules err on the side of blanking, and each one is counted (the manifest says what
was blanked how many times, never what it was):

- ``pem``: private key blocks (``-----BEGIN ... PRIVATE KEY-----`` to its END line, or to the end of the text
  when the END line was cut off);
- ``value``: ``name=value``, ``name: value``, ``"name": "value"`` and ``name value`` config lines whose name
  holds a secret (password, psk, token, secret, wpa_passphrase, PrivateKey, ...); yes/no/true/false/0/1 stay.
  An unquoted value on a line of its own runs to the end of the line (NetworkManager keyfiles, hostapd,
  environment files and mosquitto.conf read it so: a Wi-Fi key may hold spaces);
- ``hash``: the password hash of a ``user:$id$...`` line (mosquitto password file, shadow, htpasswd);
- ``url-login``: the password in ``scheme://user:password@host``, up to the last '@' (a password may hold one);
- ``bearer``: ``Authorization: Bearer ...`` / ``Basic ...``;
- ``identifier``: IMEI, ICCID and IMSI (also the bare answer to ``AT+CIMI``) masked as the GUI masks the IMEI
  (first 8 digits kept);
- ``command``: what :func:`siteline.core.redact.redact_command` finds in a command line (``sshpass -p x``, ...).

Never raises: any text goes in, text comes out (a rule that fails blanks the whole text). Every rule runs in
time linear in the text (each pattern starts only where a word starts, and bounds what it may scan): it runs on
every record of Siteline's own log, and a device may print a 200 KB line without a space.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from siteline.core.redact import BLANK, is_secret_name, redact_command

__all__ = ["BLANK", "Redacted", "Redactor", "mask_digits", "redact_text"]

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]{0,40}PRIVATE KEY[A-Z0-9 ]{0,40})-----.*?(?:-----END [A-Z0-9 ]{0,60}-----|\Z)",
                  re.DOTALL)
# name (maybe quoted) = or : value (quoted or a bare word). The name may hold dots (nmcli's
# 802-11-wireless-security.psk) and dashes. It starts only where a word starts (no rescan from inside one), and
# the value is read only after the name proved a secret's: a value is never scanned twice (linear time).
_NAME_SEP = re.compile(r"""(?<![\w.-])(?P<q>["']?)(?P<name>[A-Za-z0-9_][\w.-]*)(?P=q)(?P<sep>[ \t]*[:=][ \t]*)""")
_VALUE = re.compile(r""""(?:[^"\\\n]|\\.)*"?|'[^'\n]*'?|[^\s,;'"}\]]+""")
# A config line "name value" (mosquitto.conf's ``remote_password x y``, wpa_supplicant's quoted psk has '=').
_SPACED = re.compile(r"^(?P<lead>[ \t]*)(?P<name>[A-Za-z_][\w.-]*)(?P<sep>[ \t]+)(?P<val>[^\s#][^\n]*)$", re.MULTILINE)
# An unquoted value that starts its line (after blanks or "export ") runs to the end of the line.
_LINE_HEAD = re.compile(r"(?:^|\n)[ \t]*(?:export[ \t]+)?\Z")
# The password runs to the LAST '@' of the address (safe_url() does the same); both parts are bounded.
_URL_LOGIN = re.compile(r"(?<![\w+.-])([a-zA-Z][\w+.-]{0,30}://[^\s/:@'\"]{0,256}:)([^\s'\"/]{1,512})@")
# user:$id$salt$hash (mosquitto_passwd, /etc/shadow, htpasswd): the user stays, the hash goes.
_HASH_LINE = re.compile(r"^([ \t]*[^\s:#]{1,64}:)(\$[0-9A-Za-z]{1,6}\$[^\s:]{8,})", re.MULTILINE)
# The answer to AT+CIMI is an IMSI on the next line, without a label.
_CIMI_REPLY = re.compile(r"(AT\+CIMI[ \t]*(?:\r?\n){1,2}[ \t]*)(\d{14,15})\b", re.IGNORECASE)
_BEARER = re.compile(r"\b(Bearer|Basic|Token)([ \t]+)([A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
_ID_LABEL = re.compile(
    r"(imei|iccid|imsi|cimi|equipment[-_ ]identifier|sim[-_ ]identifier|subscriber[-_ ]identity|equipment-id)"
    r"([^0-9\n]{0,12}?)(\d{14,20})\b", re.IGNORECASE)
_LONE_DIGITS = re.compile(r"(?<![\d.])(\d{15}|89\d{17,18})(?![\d.])")
_COMMAND_LIKE = re.compile(r"(?:^|\s)-{1,2}[A-Za-z]|pass:|<<<|\|")
_HARMLESS = {"yes", "no", "true", "false", "on", "off", "0", "1", "none", "null", "", "''", '""', BLANK,
             f'"{BLANK}"', f"'{BLANK}'", "2", "--"}  # "--": nmcli's "not set"
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


def _is_secret_value(name: str, sep: str, value: str) -> bool:
    if _folded(name) == "key" and "=" not in sep:
        return False  # "key": "luks" in JSON is a field's name; a bare key= in a config is a secret
    bare = value.strip("\"'").lower()
    # a flag, or the name of a setting ("ssh_passwords: passwordauthentication yes"), is not a secret
    return secret_name(name) and bare not in _HARMLESS and value not in _HARMLESS and _folded(bare) not in _NOT_SECRET


def _value_end(text: str, start: int, value: re.Match[str]) -> int:
    """Where the value ends: the matched word, or the end of the line for an unquoted value on a line of its own
    (``psk=correct horse battery``). Only a bounded stretch before the name is looked at (linear time)."""
    if value.group()[:1] in "\"'" or not _LINE_HEAD.search(text, max(0, start - 40), start):
        return value.end()
    eol = text.find("\n", value.end())
    eol = len(text) if eol < 0 else eol
    return max(value.end(), len(text[:eol].rstrip(" \t\r")))


def _assignments(counts: Counter[str], text: str) -> str:
    """name=value pairs, left to right; after a name that is not a secret the search goes on at its value: in
    "ValueError: password=x" the value "password=x" holds an assignment of its own."""
    out: list[str] = []
    pos = 0
    while (match := _NAME_SEP.search(text, pos)) is not None:
        name, sep = match.group("name"), match.group("sep")
        value = _VALUE.match(text, match.end()) if secret_name(name) else None
        if value is None or not _is_secret_value(name, sep, value.group()):
            out.append(text[pos:match.end()])
            pos = match.end()
            continue
        end = _value_end(text, match.start(), value)
        counts["value"] += 1
        out.append(text[pos:match.end()] + _blank_value(text[match.end():end]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _spaced(match: re.Match[str]) -> str:
    """``name value`` lines: a config key (with '_', '-' or '.', like mosquitto's remote_password) takes the
    rest of the line; a plain word (a log message starting "password ...") only a one-word value."""
    value, name = match.group("val").rstrip(" \t\r"), match.group("name")
    if not secret_name(name) or value.lower() in _HARMLESS:
        return match.group(0)
    if len(value.split()) > 1 and not re.search(r"[_.-]", name):
        return match.group(0)
    tail = match.group("val")[len(value):]
    return f"{match.group('lead')}{name}{match.group('sep')}{BLANK}{tail}"


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
    text = _pass(counts, "hash", _HASH_LINE, text, lambda m: f"{m.group(1)}{BLANK}")
    text = _pass(counts, "bearer", _BEARER, text, lambda m: f"{m.group(1)}{m.group(2)}{BLANK}")
    text = _assignments(counts, text)
    text = _pass(counts, "value", _SPACED, text, _spaced)
    text = _pass(counts, "identifier", _ID_LABEL, text, lambda m: m.group(1) + m.group(2) + mask_digits(m.group(3)))
    text = _pass(counts, "identifier", _CIMI_REPLY, text, lambda m: m.group(1) + mask_digits(m.group(2)))
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
