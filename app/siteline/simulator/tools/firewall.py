"""iptables, iptables-save, iptables-restore and nft, recording rules in <state>/admin (never the host's)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from siteline.simulator.state import DeviceState
from siteline.simulator.store import read_json, update_json, write_json
from siteline.simulator.tools.common import fail, out

BUILTIN = {"filter": ["INPUT", "FORWARD", "OUTPUT"], "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
           "mangle": ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"], "raw": ["PREROUTING", "OUTPUT"]}
VERSION = "iptables v1.8.7 (nf_tables)"


_RULES = ["iptables.json"]  # ip6tables keeps its own tables (one tool call per process: set once in main)


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    family = tool.startswith("ip6tables")
    if family:
        _RULES[0] = "ip6tables.json"
        tool = tool.replace("ip6tables", "iptables")
    handler = {"iptables": iptables, "iptables-save": save, "iptables-restore": restore, "nft": nft}[tool]
    return handler(argv, state)


def _path(state: DeviceState, name: str) -> Path:
    (state.root / "admin").mkdir(exist_ok=True)
    return state.root / "admin" / name


def _tables(doc: dict[str, Any]) -> dict[str, Any]:
    tables = doc.setdefault("tables", {})
    for table, chains in BUILTIN.items():
        t = tables.setdefault(table, {})
        for chain in chains:
            t.setdefault(chain, {"policy": "ACCEPT", "rules": []})
        # Built-in chains first in the kernel's order, then user chains (the JSON file is stored sorted).
        tables[table] = {**{c: t[c] for c in chains}, **{c: v for c, v in t.items() if c not in chains}}
    return {name: tables[name] for name in (*BUILTIN, *(n for n in tables if n not in BUILTIN))}


def _normalise(rule: list[str]) -> str:
    """iptables -S prints "-p tcp -m tcp --dport 22" for "-p tcp --dport 22": add the implied match."""
    words = list(rule)
    if "-p" in words and any(w in words for w in ("--dport", "--sport")):
        proto = words[words.index("-p") + 1] if words.index("-p") + 1 < len(words) else ""
        if proto in ("tcp", "udp") and f"-m {proto}" not in " ".join(words):
            words.insert(words.index("-p") + 2, "-m")
            words.insert(words.index("-p") + 3, proto)
    return " ".join(words)


def iptables(argv: list[str], state: DeviceState) -> int:
    table, args = "filter", list(argv)
    if "-t" in args:
        i = args.index("-t")
        table = args[i + 1] if i + 1 < len(args) else ""
        del args[i : i + 2]
    if table not in BUILTIN:
        return fail(f"{VERSION}: can't initialize iptables table `{table}': Table does not exist "
                    "(do you need to insmod?)\nPerhaps iptables or your kernel needs to be upgraded.", 3)
    if args in (["-V"], ["--version"]):
        out(VERSION + "\n")
        return 0
    if not args:
        return fail(f"{VERSION}: no command specified\nTry `iptables -h' or 'iptables --help' for more information.", 2)
    for opt in ("-n", "-v", "--line-numbers", "-w", "-x"):
        while opt in args[1:]:
            args.remove(opt)
    return _command(table, args, state)


def _command(table: str, args: list[str], state: DeviceState) -> int:
    cmd, rest = args[0], args[1:]
    doc = read_json(_path(state, _RULES[0]))
    chains = _tables(doc)[table]
    chain = rest[0] if rest else None
    if cmd in ("-S", "--list-rules", "-L", "--list"):
        if chain and chain not in chains:
            return fail("iptables: No chain/target/match by that name.", 1)
        out(_list_rules(chains, chain) if cmd in ("-S", "--list-rules") else _list_table(chains, chain))
        return 0
    if cmd in ("-A", "-I", "-D", "-C", "-P", "-N", "-X", "-F", "-Z", "--append", "--insert", "--delete", "--check",
               "--policy", "--new-chain", "--delete-chain", "--flush", "--zero"):
        return _change(table, cmd, rest, state)
    return fail(f"{VERSION}: unknown option \"{cmd}\"\nTry `iptables -h' or 'iptables --help' for more information.", 2)


def _change(table: str, cmd: str, rest: list[str], state: DeviceState) -> int:
    cmd = {"--append": "-A", "--insert": "-I", "--delete": "-D", "--check": "-C", "--policy": "-P",
           "--new-chain": "-N", "--delete-chain": "-X", "--flush": "-F", "--zero": "-Z"}.get(cmd, cmd)
    result: list[int] = [0]
    message: list[str] = []

    def change(doc: dict[str, Any]) -> None:
        tables = _tables(doc)
        doc["tables"] = tables
        chains = tables[table]
        chain = rest[0] if rest else ""
        if cmd in ("-F", "-Z") and not chain:
            for c in chains.values():
                c["rules"] = [] if cmd == "-F" else c["rules"]
            return
        if cmd == "-N":
            if chain in chains:
                result[0], message[:] = 1, ["iptables: Chain already exists."]
            else:
                chains[chain] = {"policy": "-", "rules": []}
            return
        if chain not in chains:
            result[0], message[:] = 1, ["iptables: No chain/target/match by that name."]
            return
        _apply(chains, chain, cmd, rest[1:], result, message)

    if cmd == "-C":
        chains = _tables(read_json(_path(state, _RULES[0])))[table]
        found = rest and rest[0] in chains and _normalise(rest[1:]) in chains[rest[0]]["rules"]
        return 0 if found else fail("iptables: Bad rule (does a matching rule exist in that chain?).", 1)
    update_json(state.root, _path(state, _RULES[0]), change)
    if result[0]:
        return fail(message[0], result[0])
    state.log(f"iptables -t {table} {cmd} {' '.join(rest)}", "iptables", priority=5)
    return 0


def _apply(chains: dict[str, Any], chain: str, cmd: str, spec: list[str], result: list[int], msg: list[str]) -> None:
    rules: list[str] = chains[chain]["rules"]
    if cmd == "-P":
        if not spec or spec[0] not in ("ACCEPT", "DROP"):
            result[0], msg[:] = 2, ["iptables: Bad policy name. Run `dmesg' for more information."]
        else:
            chains[chain]["policy"] = spec[0]
    elif cmd == "-F":
        chains[chain]["rules"] = []
    elif cmd == "-X":
        if chain in BUILTIN["filter"] or rules:
            result[0], msg[:] = 1, ["iptables: Directory not empty."]
        else:
            del chains[chain]
    elif cmd == "-A":
        rules.append(_normalise(spec))
    elif cmd == "-I":
        pos = int(spec[0]) - 1 if spec and spec[0].isdigit() else 0
        rules.insert(pos, _normalise(spec[1:] if spec and spec[0].isdigit() else spec))
    elif cmd == "-D":
        if spec and spec[0].isdigit() and int(spec[0]) <= len(rules):
            rules.pop(int(spec[0]) - 1)
        elif _normalise(spec) in rules:
            rules.remove(_normalise(spec))
        else:
            result[0], msg[:] = 1, ["iptables: Bad rule (does a matching rule exist in that chain?)."]


def _list_rules(chains: dict[str, Any], only: str | None) -> str:
    lines = []
    for name, c in chains.items():
        if only and name != only:
            continue
        lines.append(f"-P {name} {c['policy']}" if c["policy"] != "-" else f"-N {name}")
    for name, c in chains.items():
        if not only or name == only:
            lines += [f"-A {name} {rule}" for rule in c["rules"]]
    return "\n".join(lines) + "\n"


def _list_table(chains: dict[str, Any], only: str | None) -> str:
    blocks = []
    for name, c in chains.items():
        if only and name != only:
            continue
        head = f"Chain {name} (policy {c['policy']})" if c["policy"] != "-" else f"Chain {name} (0 references)"
        rows = [head, f"{'target':<10} {'prot':<4} {'opt':<3} {'source':<20} {'destination':<20}"]
        for rule in c["rules"]:
            rows.append(_row(rule.split()))
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n"


def _row(w: list[str]) -> str:
    def opt(flag: str, default: str) -> str:
        return w[w.index(flag) + 1] if flag in w and w.index(flag) + 1 < len(w) else default

    extra = f"{opt('-p', '')} dpt:{opt('--dport', '')}" if "--dport" in w else ""
    return (f"{opt('-j', ''):<10} {opt('-p', 'all'):<4} {'--':<3} {opt('-s', '0.0.0.0/0'):<20} "
            f"{opt('-d', '0.0.0.0/0'):<20} {extra}").rstrip()


def save(argv: list[str], state: DeviceState) -> int:
    tables = _tables(read_json(_path(state, _RULES[0])))
    stamp = time.strftime("%a %b %d %H:%M:%S %Y")
    wanted = argv[argv.index("-t") + 1] if "-t" in argv and argv.index("-t") + 1 < len(argv) else None
    lines = []
    for table, chains in tables.items():
        if wanted and table != wanted:
            continue
        lines += [f"# Generated by iptables-save v1.8.7 on {stamp}", f"*{table}"]
        lines += [f":{n} {c['policy']} [0:0]" for n, c in chains.items()]
        lines += [f"-A {n} {r}" for n, c in chains.items() for r in c["rules"]]
        lines += ["COMMIT", f"# Completed on {stamp}"]
    out("\n".join(lines) + "\n")
    return 0


def restore(argv: list[str], state: DeviceState) -> int:
    argv = _without_wait(argv)
    files = [a for a in argv if not a.startswith("-")]
    try:
        text = Path(files[0]).read_text(encoding="utf-8") if files else sys.stdin.read()
    except OSError as exc:
        return fail(f"Can't open {files[0]}: {exc.strerror}", 1)
    parsed = _parse_save(text)
    if isinstance(parsed, int):
        return fail(f"iptables-restore: line {parsed} failed", 1)
    noflush = "-n" in argv or "--noflush" in argv

    def change(doc: dict[str, Any]) -> None:
        tables = _tables(doc)
        doc["tables"] = tables
        for table, chains in parsed.items():
            if not noflush:
                tables[table] = {}
            for name, c in chains.items():
                tables[table].setdefault(name, {"policy": c["policy"], "rules": []})
                tables[table][name]["policy"] = c["policy"]
                tables[table][name]["rules"] += c["rules"]

    update_json(state.root, _path(state, _RULES[0]), change)
    state.log("iptables rules restored", "iptables", priority=5)
    return 0


def _without_wait(argv: list[str]) -> list[str]:
    """iptables-restore's -w/--wait [seconds] and -W/--wait-interval usecs (the xtables lock; no lock here)."""
    kept: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg in ("-w", "--wait"):
            skip = i + 1 < len(argv) and argv[i + 1].isdigit()
        elif arg in ("-W", "--wait-interval"):
            skip = True
        elif not arg.startswith(("--wait=", "--wait-interval=")):
            kept.append(arg)
    return kept


def _parse_save(text: str) -> dict[str, dict[str, Any]] | int:
    tables: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*") and len(line) > 1 and line[1:] in BUILTIN:
            current = tables.setdefault(line[1:], {})
        elif current is not None and line.startswith(":") and len(line.split()) >= 2:
            name, policy = line[1:].split()[:2]
            current[name] = {"policy": policy, "rules": []}
        elif current is not None and line.startswith("-A ") and len(line.split()) >= 2:
            chain = line.split()[1]
            if chain not in current:
                return number
            current[chain]["rules"].append(_normalise(line.split()[2:]))
        elif line == "COMMIT" and current is not None:
            current = None
        else:
            return number
    return tables


def nft(argv: list[str], state: DeviceState) -> int:
    """nft: list ruleset/tables/table, flush ruleset, -f FILE|- (-c checks only), delete table, add statements.

    The ruleset is kept as text, one block per table; a script is applied all or nothing, as nft's
    transactions are (``table inet x`` creates x when absent, ``delete table inet x`` drops it)."""
    path = _path(state, "nft.json")
    doc = read_json(path, {"ruleset": ""})
    args = [a for a in argv if a not in ("-a", "--handle", "-n", "-s", "--stateless")]
    ruleset = str(doc.get("ruleset", ""))
    if args[:1] == ["list"]:
        return _nft_list(ruleset, args[1:])
    if args and args[0] in ("-f", "--file", "-c"):
        files = [a for a in args if not a.startswith("-") or a == "-"]
        if not files:
            return fail("nft: option requires an argument -- 'f'", 1)
        try:
            text = sys.stdin.read() if files[0] == "-" else Path(files[0]).read_text(encoding="utf-8")
        except OSError as exc:
            return fail(f"Error: Could not process rule: {exc.strerror}\ninclude \"{files[0]}\"", 1)
        where = "/dev/stdin" if files[0] == "-" else files[0]
    elif args:
        text, where = " ".join(args) + "\n", "command line"
    else:
        return fail("Error: syntax error, unexpected end of file", 1)
    applied = _nft_apply(ruleset, text, where, Path)
    if isinstance(applied, int):
        return applied
    if "-c" not in args:
        write_json(path, {"ruleset": applied})
        state.log("nftables ruleset loaded", "nft", priority=5)
    return 0


def _nft_blocks(ruleset: str) -> list[tuple[str, str]]:
    """The ruleset as (key, text) blocks: key "family name" for a table, "" for any other statement."""
    blocks: list[tuple[str, str]] = []
    lines = ruleset.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        words = lines[i].split()
        depth, j = lines[i].count("{") - lines[i].count("}"), i + 1
        while depth > 0 and j < len(lines):
            depth += lines[j].count("{") - lines[j].count("}")
            j += 1
        text = "".join(lines[i:j])
        key = f"{words[1]} {words[2]}" if len(words) >= 3 and words[0] == "table" else ""
        if words:
            blocks.append((key, text if text.endswith("\n") else text + "\n"))
        i = j
    return blocks


def _nft_list(ruleset: str, what: list[str]) -> int:
    blocks = _nft_blocks(ruleset)
    if what[:1] == ["ruleset"]:
        out(ruleset)
    elif what[:1] == ["tables"]:
        out("".join(f"table {key}\n" for key, _ in blocks if key))
    elif what[:1] == ["table"] and len(what) >= 3:
        found = [text for key, text in blocks if key == f"{what[1]} {what[2]}"]
        if not found:
            return fail(f"Error: No such file or directory\nlist table {what[1]} {what[2]}", 1)
        out(found[0])
    else:
        return fail(f"Error: syntax error, unexpected {what[0] if what else 'end of file'}", 1)
    return 0


def _nft_apply(ruleset: str, script: str, where: str, locate: Callable[[str], Path], depth: int = 0) -> str | int:
    """``script`` applied to ``ruleset`` (the new ruleset), or the exit status after printing nft's error.

    ``include "FILE"`` applies FILE in place; ``locate`` maps its device path to where it can be read."""
    if script.count("{") != script.count("}"):
        return fail(f"{where}:1:1-1: Error: syntax error, unbalanced braces", 1)
    blocks = _nft_blocks(ruleset)
    for number, (_key, text) in enumerate(_nft_blocks(script), 1):
        words = text.split()
        if words[0] == "include" and len(words) == 2:
            name = words[1].strip('"')
            try:
                included = locate(name).read_text(encoding="utf-8") if depth < 8 else None
            except (OSError, UnicodeDecodeError) as exc:
                return fail(f"{where}:{number}:1-{len(text.strip())}: Error: Could not process rule: "
                            f"{getattr(exc, 'strerror', None) or exc}\n{text.strip()}", 1)
            if included is None:
                return fail(f"{where}:{number}: Error: include nested too deeply", 1)
            applied = _nft_apply("".join(t for _, t in blocks), included, name, locate, depth + 1)
            if isinstance(applied, int):
                return applied
            blocks = _nft_blocks(applied)
            continue
        if words[0] == "add" and words[1:2] == ["table"]:
            words = words[1:]
        if words[:2] == ["flush", "ruleset"]:
            blocks = []
        elif words[:2] == ["delete", "table"] and len(words) >= 4:
            key = f"{words[2]} {words[3]}"
            if not any(k == key for k, _ in blocks):
                return fail(f"{where}:{number}:1-{len(text.strip())}: Error: Could not process rule: No such file or "
                            f"directory\n{text.strip()}", 1)
            blocks = [(k, t) for k, t in blocks if k != key]
        elif words[0] == "table" and len(words) >= 3:
            key = f"{words[1]} {words[2]}"
            body = text if "{" in text else f"table {key} {{\n}}\n"
            if "{" in text or not any(k == key for k, _ in blocks):
                blocks = [(k, t) for k, t in blocks if k != key] + [(key, body)]
        elif not words[0].startswith("#"):
            blocks.append(("", text))
    return "".join(t for _, t in blocks)


# Where the device's boot loads its rules from (iptables-persistent / nftables.service), by rules file.
BOOT_FILES = {"iptables.json": "/etc/iptables/rules.v4", "ip6tables.json": "/etc/iptables/rules.v6",
              "nft.json": "/etc/nftables.conf"}


def _device_file(root: Path, path: str) -> Path:
    """The host path of a device file (in its /etc overlay when the simulator keeps one, else its rootfs)."""
    from siteline.simulator import rootfs

    locate = getattr(rootfs, "device_file", None)
    found = locate(root, path) if locate is not None else None
    return Path(found) if found is not None else rootfs.rootfs(root) / path.lstrip("/")


def at_boot(state: DeviceState, *, lost: bool) -> None:
    """A boot: the kernel starts with no rules (``lost``: a reboot, not the first power-on of a test's state),
    then the persisted rules files load, as netfilter-persistent and nftables.service do."""
    for name, boot in BOOT_FILES.items():
        try:
            text = _device_file(state.root, boot).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = None
        if name == "nft.json":
            loaded = _nft_apply("", text, boot, lambda p: _device_file(state.root, p)) if text is not None else None
            if isinstance(loaded, str):
                write_json(_path(state, name), {"ruleset": loaded})
            elif lost:
                _path(state, name).unlink(missing_ok=True)
            continue
        parsed = _parse_save(text) if text is not None else None
        if isinstance(parsed, dict):
            write_json(_path(state, name), {"tables": _tables({"tables": parsed})})
        elif lost:
            _path(state, name).unlink(missing_ok=True)
