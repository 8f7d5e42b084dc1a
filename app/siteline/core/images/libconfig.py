"""A small, strict reader for libconfig text (the syntax of SWUpdate's sw-description).

Enough of https://hyperrealm.github.io/libconfig/ for sw-description: settings ``name = value;``
or ``name: value``, groups ``{}``, lists ``()``, arrays ``[]``, strings (adjacent ones joined,
C escapes), integers (decimal, hex, ``L`` suffix), floats, booleans and the three comment styles.
``@include`` is refused: an archive must not name files outside itself. Garbage raises ValueError.
"""

from __future__ import annotations

import re

Value = str | int | float | bool | list["Value"] | dict[str, "Value"]

MAX_DEPTH = 32
_TOKEN = re.compile(
    r"""(?P<ws>\s+|\#[^\n]*|//[^\n]*|/\*.*?\*/)
      |(?P<str>"(?:[^"\\]|\\.)*")
      |(?P<float>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)|[-+]?(?:\d+\.\d*|\.\d+))
      |(?P<hex>0[xX][0-9a-fA-F]+L{0,2})
      |(?P<int>[-+]?\d+L{0,2})
      |(?P<name>[A-Za-z*][-A-Za-z0-9_*]*)
      |(?P<punct>[=:;,{}()\[\]])""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "\\": "\\", '"': '"'}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            raise ValueError(f"unexpected character {text[pos]!r} on line {line}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
    return out


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(x[0-9a-fA-F]{2}|.)", lambda m: _escape(m.group(1)), body, flags=re.DOTALL)


def _escape(code: str) -> str:
    if code.startswith("x") and len(code) == 3:
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, code)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok[0] == "eof":
            raise ValueError("unexpected end of text")
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok[1] != text:
            raise ValueError(f"expected {text!r}, found {tok[1]!r}")

    def settings(self, end: str, depth: int) -> dict[str, Value]:
        out: dict[str, Value] = {}
        while self.peek()[1] != end and self.peek()[0] != "eof":
            kind, name = self.take()
            if kind != "name":
                raise ValueError(f"expected a setting name, found {name!r}")
            if self.peek()[1] not in ("=", ":"):
                raise ValueError(f"expected '=' or ':' after {name!r}")
            self.take()
            out[name] = self.value(depth + 1)
            if self.peek()[1] in (";", ","):
                self.take()
        return out

    def value(self, depth: int) -> Value:
        if depth > MAX_DEPTH:
            raise ValueError("nesting too deep")
        kind, text = self.take()
        if kind == "str":
            parts = [_unquote(text)]
            while self.peek()[0] == "str":
                parts.append(_unquote(self.take()[1]))
            return "".join(parts)
        if kind == "int":
            return int(text.rstrip("L"))
        if kind == "hex":
            return int(text.rstrip("L"), 16)
        if kind == "float":
            return float(text)
        if kind == "name" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if text == "{":
            group = self.settings("}", depth)
            self.expect("}")
            return group
        if text in ("(", "["):
            return self.sequence(")" if text == "(" else "]", depth)
        raise ValueError(f"unexpected {text!r} where a value was expected")

    def sequence(self, end: str, depth: int) -> list[Value]:
        items: list[Value] = []
        while self.peek()[1] != end:
            items.append(self.value(depth + 1))
            if self.peek()[1] == ",":
                self.take()
            elif self.peek()[1] != end:
                raise ValueError(f"expected ',' or {end!r} in a list, found {self.peek()[1]!r}")
        self.take()
        return items


def loads(text: str) -> dict[str, Value]:
    """Parse libconfig text into dicts/lists/scalars; raise ValueError on anything malformed."""
    if re.search(r"^\s*@include", text, re.MULTILINE):
        raise ValueError("@include is not allowed in an archive's sw-description")
    parser = _Parser(_tokens(text))
    out = parser.settings("", 0)
    if parser.peek()[0] != "eof":
        raise ValueError(f"unexpected {parser.peek()[1]!r} at top level")
    return out
