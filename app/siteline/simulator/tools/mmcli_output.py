"""mmcli's three output forms (human, --output-keyvalue, --output-json) from one list of fields.

Follows ModemManager's cli/mmcli-output.c: every field has a dotted key, a section and a human
name; unset values print as "--" (key-value, JSON) or are skipped (human); multi-values are
``.length``/``.value[n]`` in key-value form and arrays in JSON; JSON nests the dotted keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

HUMAN_MAX_VALUE_LENGTH = 60


@dataclass(frozen=True)
class Field:
    key: str
    section: str
    name: str | None  # None: not shown in human output (e.g. signal-quality.recent)
    value: str | list[str] | None
    multiline: bool = False
    shown: str | None = None  # the human form's text when it differs (e.g. "56% (recent)" for "56")


def keyvalue(fields: list[Field]) -> str:
    rows: list[tuple[str, str]] = []
    for f in fields:
        if isinstance(f.value, list):
            if f.value:
                rows.append((f"{f.key}.length", str(len(f.value))))
                rows += [(f"{f.key}.value[{i}]", _escape(v)) for i, v in enumerate(f.value, 1)]
            else:
                rows.append((f.key, "--"))
        else:
            rows.append((f.key, _escape(f.value) if f.value else "--"))
    width = max((len(k) for k, _ in rows), default=0)
    return "".join(f"{k:<{width}} : {v}\n" for k, v in rows)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace('"', '\\"')


def as_json(fields: list[Field]) -> str:
    tree: dict[str, Any] = {}
    for f in fields:
        node = tree
        parts = f.key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = list(f.value) if isinstance(f.value, list) else (f.value or "--")
    return json.dumps(tree, sort_keys=True, separators=(",", ":")) + "\n"


def human(fields: list[Field]) -> str:
    shown = [f for f in fields if f.name and f.value]
    if not shown:
        return ""
    sw = max(len(f.section) for f in shown)
    nw = max(len(f.name or "") for f in shown)
    lines: list[str] = []
    section = None
    for f in shown:
        if f.section != section:
            section = f.section
            lines.append("  " + "-" * min(60, sw + nw + 4))
            head = f"  {f.section:<{sw}} | "
        else:
            head = f"  {'':<{sw}} | "
        text = f.shown if f.shown is not None else _human_value(f, f"  {'':<{sw}} | {'':<{nw}}  ")
        lines.append(head + f"{f.name:>{nw}}: " + text)
    return "\n".join(lines) + "\n"


def _human_value(f: Field, indent: str) -> str:
    if not isinstance(f.value, list):
        return str(f.value).replace("\n", "\n" + indent)
    text, line_length = "", 0
    for i, value in enumerate(f.value):
        last = i == len(f.value) - 1
        length = len(value) + (0 if last else 2)
        if (f.multiline and i) or line_length + length > HUMAN_MAX_VALUE_LENGTH:
            text += "\n" + indent
            line_length = 0
        else:
            line_length += length
        text += value + ("" if f.multiline or last else ", ")
    return text
