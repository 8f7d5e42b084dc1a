"""Text fit to show, log or record: URLs without the login typed into them, command lines without the secrets.

:func:`redact_command` is BEST EFFORT. A shell line is a program; no reading of it finds every secret (a
password in a variable set three commands earlier, in a script, in a file). It knows the common ways a
secret is typed into a command line, errs on the side of blanking when a word only looks like one of them,
and leaves ordinary commands as they were (``mkdir -p dir``, ``ssh -p 2222``: ``-p<value>`` is a password
only for the MySQL clients). The place that never sees a secret is the one where the person typed it with
echo off (console_audit.py withholds those lines).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["BLANK", "command_detail", "is_secret_name", "redact_command", "safe_url"]

BLANK = "***"


def safe_url(url: str) -> str:
    """``url`` fit to quote in a message: without a user name or password (``mqtts://jane:pw@host`` ->
    ``mqtts://host``), even when the rest does not parse, and cut to 80 characters. Everything up to the last
    '@' goes: a password may hold '/', ':' or '@' itself, and a broker URL has no path worth keeping."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "", scheme
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"[:80]


# One shell word: quoted parts (an unclosed quote runs to the end of the line) and unquoted characters
# other than blanks and the operators that end a word.
_WORD = re.compile(r"""(?:'[^']*(?:'|$)|"(?:[^"\\]|\\.)*(?:"|$)|\\.|[^\s'"|;&<>()`])+""", re.DOTALL)
_SEPARATORS = "|;&\n()`"
_QUOTES = "'\""
_ASSIGN = re.compile(r"(^|,)(-{0,2})([A-Za-z_][\w.-]*)=")  # NAME=, --name=, and mount's ",password="
_URL_LOGIN = re.compile(r"([a-zA-Z][\w+.-]*://[^\s/:@'\"]*:)([^\s'\"]*)@")
_SECRET_PARTS = ("secret", "secrets", "token", "psk", "apikey", "credential", "credentials", "pass", "passin",
                 "passout", "passfile", "passkey", "pwd")
_SECRET_NAME = re.compile(r"password|passwd|passphrase|secret|token|api-?key|storepass|keypass", re.IGNORECASE)
_PREFIX = ("sudo", "env", "exec", "command", "time", "nohup", "nice", "doas", "export", "local", "declare")
_MYSQL = {"mysql", "mysqladmin", "mysqldump", "mariadb", "mariadb-admin", "mariadb-dump", "mysqlshow", "mysqlcheck"}
_VALUE_FLAGS = {  # per command: short options whose next word (or attached rest) is a password
    "sshpass": ("-p",), "mosquitto_pub": ("-P",), "mosquitto_sub": ("-P",), "mosquitto_rr": ("-P",),
    "redis-cli": ("-a",), "ssh-keygen": ("-N", "-P"),
}
_LOGIN_FLAGS = {"curl": ("-u", "--user", "-U", "--proxy-user")}  # user:password: the part after the colon
_KNOWN = {*_MYSQL, *_VALUE_FLAGS, *_LOGIN_FLAGS, "nmcli", "htpasswd", "mosquitto_passwd", "wpa_passphrase", "echo",
          "printf"}
_STDIN_SINKS = re.compile(r"(?:^|/)(?:chpasswd|passwd|\w*passwd)$|^cryptsetup$")
_NMCLI_SECRET = re.compile(r"(?:^|\.)(?:psk|password|password-raw|pin|wep-key[0-3]|secrets|private-key-password)$")


@dataclass(frozen=True)
class _Word:
    start: int
    end: int
    text: str


def _is_secret_name(name: str) -> bool:
    """An environment variable or option name that holds a secret: PGPASSWORD, MQTT_PASSWORD, API_KEY, --token."""
    parts = [p for p in re.split(r"[-_.]", name.lower()) if p]
    if _SECRET_NAME.search(name) or any(p in _SECRET_PARTS for p in parts):
        return True
    return len(parts) > 1 and parts[-1] in ("key", "pin")


def is_secret_name(name: str) -> bool:
    """Public form of the name rule (PGPASSWORD, MQTT_PASSWORD, API_KEY, --token): the diagnostics bundle's
    redaction (core/diag/redact.py) applies it to config and JSON field names."""
    return _is_secret_name(name)


def _takes_value(option: str) -> bool:
    """A secret-named option that is a switch, not followed by the secret: --no-password, --password-stdin."""
    return not (option.startswith("no-") or option.endswith(("-stdin", "-prompt")))


def _segments(line: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, piped): the simple commands of the line, outside quotes; piped when a '|' (not '||') follows."""
    start, quote, i = 0, "", 0
    while i < len(line):
        ch = line[i]
        if quote:
            quote = "" if ch == quote else quote
            i += 1 if ch != "\\" or quote != '"' else 2
            continue
        if ch in _QUOTES:
            quote = ch
        elif ch == "\\":
            i += 1
        elif ch in _SEPARATORS:
            pipe = ch == "|" and line[i + 1:i + 2] != "|" and line[i - 1:i] != "|"
            yield start, i, pipe
            start = i + 1
        i += 1
    yield start, len(line), False


def _words(line: str, start: int, end: int) -> list[_Word]:
    return [_Word(m.start() + start, m.end() + start, m.group()) for m in _WORD.finditer(line[start:end])]


def _blank_from(word: _Word, keep: int, stop: int | None = None) -> tuple[int, int, str]:
    """Replace ``word.text[keep:stop]`` by the blank, keeping the quotes around it."""
    value = word.text[keep:stop]
    if value in ("", "''", '""'):
        return word.start + keep, word.start + keep, ""
    opening = word.text[0] if word.text[0] in _QUOTES else ""
    if value[0] in _QUOTES and len(value) > 1 and value.endswith(value[0]):
        new = value[0] + BLANK + value[0]
    elif opening and value.endswith(opening) and stop is None:
        new = BLANK + opening
    else:
        new = BLANK
    return word.start + keep, word.start + keep + len(value), new


def _bare(text: str) -> str:
    """A word without its quotes (enough to compare command and option names)."""
    return text.replace("'", "").replace('"', "")


def _command(words: list[_Word]) -> tuple[str, int]:
    """The command's base name and its index: a command this module knows wherever it stands (``sudo -u bob
    mysql``, ``timeout 5 sshpass``), else the first word past sudo/env and leading VAR=value assignments."""
    for index, word in enumerate(words):
        name = _bare(word.text).rsplit("/", 1)[-1]
        if name in _KNOWN:
            return name, index
    for index, word in enumerate(words):
        name = _bare(word.text)
        if name in _PREFIX or _ASSIGN.match(name) or (index and name.startswith("-") and _bare(words[0].text)
                                                         in ("sudo", "env", "nice", "doas")):
            continue
        return name.rsplit("/", 1)[-1], index
    return "", len(words)


def _assignments(word: _Word) -> Iterator[tuple[int, int, str]]:
    """NAME=value and --name=value with a secret name; inside a word, mount's ``-o user=u,password=pw``."""
    for match in _ASSIGN.finditer(word.text):
        if not _is_secret_name(match.group(3)):
            continue
        if match.group(1) == ",":  # one of several comma-separated options: up to the next comma
            comma = word.text.find(",", match.end())
            yield _blank_from(word, match.end(), None if comma < 0 else comma)
        else:
            yield _blank_from(word, match.end())
            return


def _in_word(word: _Word) -> Iterator[tuple[int, int, str]]:
    """What gives itself away wherever it stands: assignments, a URL's login, openssl's ``pass:secret``."""
    yield from _assignments(word)
    for match in _URL_LOGIN.finditer(word.text):
        yield word.start + match.start(2), word.start + match.end(2), BLANK
    bare = word.text.lstrip(_QUOTES)
    if bare.startswith("pass:"):
        yield _blank_from(word, len(word.text) - len(bare) + len("pass:"))


def _next_value(words: list[_Word], index: int) -> _Word | None:
    """The word after an option: its value, even when it starts with '-' (a password may)."""
    return words[index + 1] if index + 1 < len(words) else None


def _options(name: str, words: list[_Word]) -> Iterator[tuple[int, int, str]]:
    """Options whose value is a secret: --password x, the command's own short flags, mysql's -pSECRET."""
    flags, logins = _VALUE_FLAGS.get(name, ()), _LOGIN_FLAGS.get(name, ())
    for index, word in enumerate(words):
        text = _bare(word.text)
        value = _next_value(words, index)
        option = text.lstrip("-")
        long_secret = text.startswith("-") and "=" not in text and _is_secret_name(option) and _takes_value(option)
        nm_secret = name == "nmcli" and _NMCLI_SECRET.search(text.lstrip("+-").lower()) is not None
        if value is not None and (long_secret or nm_secret or text in flags):
            yield _blank_from(value, 0)
        elif value is not None and text in logins and ":" in value.text:
            yield _blank_from(value, value.text.index(":") + 1)
        for flag in (*flags, *logins, *(("-p",) if name in _MYSQL else ())):
            if len(flag) == 2 and text.startswith(flag) and len(text) > 2 and not text.startswith("--"):
                at = word.text.index(flag) + 2
                if flag in logins:
                    colon = word.text.find(":", at)
                    if colon < 0:
                        break
                    at = colon + 1
                yield _blank_from(word, at)
                break
    if name in ("htpasswd", "mosquitto_passwd") and any(_bare(w.text).startswith("-") and "b" in w.text
                                                         for w in words[1:-1]):
        yield _blank_from(words[-1], 0)  # -b: the password is the last word
    if name == "wpa_passphrase" and len(words) > 2:
        yield _blank_from(words[2], 0)  # wpa_passphrase SSID PASSPHRASE


def _is_sink(words: list[_Word]) -> bool:
    """A command that reads a password on its stdin: chpasswd, passwd, sudo -S, cryptsetup, --password-stdin."""
    texts = [_bare(w.text) for w in words]
    if any(_STDIN_SINKS.search(t) for t in texts) or any("-stdin" in t for t in texts):
        return True
    return bool(texts) and texts[0] == "sudo" and any(t.startswith("-") and "S" in t for t in texts[1:])


def _fed_to_sink(words: list[_Word], keep_user: bool) -> Iterator[tuple[int, int, str]]:
    """Every argument of the echo/printf feeding a password sink; ``user:`` kept (chpasswd's user name)."""
    for word in words[1:]:
        text = _bare(word.text)
        if text.startswith("-") and len(text) <= 3:
            continue  # echo -e, -n
        colon = word.text.find(":")
        yield _blank_from(word, colon + 1 if keep_user and colon > 0 else 0)


def _here_strings(line: str, start: int, end: int) -> Iterator[tuple[int, int, str]]:
    """``chpasswd <<< 'root:pw'``: the here-string's word."""
    for match in re.finditer(r"<<<\s*", line[start:end]):
        at = start + match.end()
        word = _WORD.match(line, at, end)
        if word:
            found = _Word(word.start(), word.end(), word.group())
            colon = found.text.find(":")
            yield _blank_from(found, colon + 1 if colon > 0 else 0)


def _spans(line: str) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []
    feeder: list[_Word] | None = None  # an echo/printf whose output is piped to the next command
    for start, end, piped in _segments(line):
        words = _words(line, start, end)
        name, at = _command(words)
        for word in words:
            spans.extend(_in_word(word))
        spans.extend(_options(name, words[at:]))
        spans.extend(_options("", words[:at + 1]))  # --password x before a known command's name too
        if _is_sink(words):
            spans.extend(_here_strings(line, start, end))
            if feeder is not None:
                keep_user = any(_bare(w.text).endswith("chpasswd") for w in words)  # its input is user:password
                spans.extend(_fed_to_sink(feeder, keep_user))
        feeder = words[at:] if piped and name in ("echo", "printf", "cat") else None
    return spans


def redact_command(line: str) -> tuple[str, bool]:
    """``line`` with the values of secrets typed into it blanked (``***``), and whether anything was.

    Best effort (see the module doc): environment assignments (``export MQTT_PASSWORD=x``, ``PGPASSWORD=x
    psql``), options (``--password x``, ``--password=x``, ``-passin pass:x``, ``sshpass -p x``, ``mysql -px``,
    ``curl -u user:x``, ``mosquitto_pub -P x``), a URL's login, nmcli's secrets, and what echo or printf feed
    to chpasswd, passwd or ``sudo -S``. Never raises: any text goes in, text comes out.
    """
    try:
        spans = _spans(line)
    except (ValueError, IndexError, RecursionError):  # never expected; the line is then kept out entirely
        return BLANK, True
    text, last = line, len(line) + 1
    for start, end, new in sorted(set(spans), key=lambda s: (s[0], -s[1]), reverse=True):
        if end > last or start == end:
            continue  # overlaps a span already blanked (two rules found the same value)
        text, last = text[:start] + new + text[end:], start
    return text, text != line


def command_detail(line: str) -> dict[str, object]:
    """The audit detail of a command line: ``{"line": ...}`` with the secrets typed into it blanked, plus
    ``"redacted": true`` when something was, so a reader knows the text is not verbatim."""
    text, redacted = redact_command(line)
    return {"line": text, "redacted": True} if redacted else {"line": text}
