"""Parsers for what any Linux box prints about itself. They take garbage and never raise."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from siteline.api import K8sNode, OsRelease

_OS_RELEASE_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")
_KNOWN = {"ID", "NAME", "PRETTY_NAME", "VERSION_ID", "VERSION", "BUILD_ID"}
MAX_INPUT = 64 * 1024


def parse_os_release(text: str) -> OsRelease:
    """os-release(5): KEY=value lines, values optionally shell-quoted; unknown lines ignored."""
    values: dict[str, str] = {}
    for raw in text[:MAX_INPUT].splitlines():
        line = raw.strip()
        m = _OS_RELEASE_LINE.match(line)
        if not m:
            continue
        key, value = m.group(1), m.group(2)
        try:
            parts = shlex.split(value, posix=True)
            value = " ".join(parts) if parts else ""
        except ValueError:
            value = value.strip("'\"")
        values[key] = value
    extra = {k: v for k, v in values.items() if k not in _KNOWN}
    return OsRelease(
        id=values.get("ID", ""),
        name=values.get("NAME", ""),
        pretty_name=values.get("PRETTY_NAME", "") or values.get("NAME", ""),
        version_id=values.get("VERSION_ID", ""),
        version=values.get("VERSION", ""),
        build_id=values.get("BUILD_ID", ""),
        extra=extra,
    )


def parse_proc_uptime(text: str) -> float | None:
    """/proc/uptime: 'seconds idle'."""
    parts = text.strip().split()
    try:
        value = float(parts[0])
    except (IndexError, ValueError):
        return None
    return value if value >= 0 else None


def parse_loadavg(text: str) -> tuple[float, float, float] | None:
    """/proc/loadavg: '0.52 0.58 0.59 1/467 12345'."""
    parts = text.strip().split()
    try:
        one, five, fifteen = (float(p) for p in parts[:3])
    except ValueError:
        return None
    return (one, five, fifteen)


def parse_uname(text: str) -> tuple[str | None, str | None]:
    """`uname -a` -> (kernel release, machine). Linux prints: sysname nodename release version... machine."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    parts = line.split()
    if len(parts) < 3 or parts[0] != "Linux":
        return (None, None)
    machine = None
    for candidate in reversed(parts):
        if candidate in {"x86_64", "aarch64", "armv7l", "armv6l", "mips", "mipsel", "riscv64", "i686"}:
            machine = candidate
            break
    return (parts[2], machine)


# --- k3s / MicroK8s -----------------------------------------------------------------------------------

MAX_NODES_JSON = 4 << 20  # a node's JSON is ~5 KB: room for a big cluster, not for endless garbage
_DISTRIBUTIONS = {"k3s": "k3s", "microk8s": "microk8s", "kubectl": "kubernetes"}  # kubectl: not asked today
_TABLE_STATUS = re.compile(r"^(?P<name>\S+)\s+(?P<status>\S+)\s+(?P<roles>\S+)\s+(?P<age>\S+)\s+(?P<version>v\S+)")


def parse_microk8s_status(text: str) -> tuple[bool | None, str | None]:
    """`microk8s status --format yaml`: ``running: True|False`` under ``microk8s:``, and a ``message:``."""
    running: bool | None = None
    message = None
    for line in text[:MAX_INPUT].splitlines():
        key, _, value = line.strip().partition(":")
        if key == "running" and value.strip().lower() in ("true", "false"):
            running = value.strip().lower() == "true" if running is None else running
        elif key == "message" and message is None:
            message = value.strip() or None
        elif "is not running" in line and running is None:
            running, message = False, line.strip()  # the plain-text answer of older releases
    return running, message


def _pick_node(items: list[Any], hostname: str | None) -> tuple[dict[str, Any] | None, str | None]:
    nodes = [n for n in items if isinstance(n, dict)]
    short = (hostname or "").split(".")[0].lower()
    for node in nodes:
        meta = node.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if isinstance(name, str) and short and name.split(".")[0].lower() == short:
            return node, None
    if len(nodes) == 1:
        return nodes[0], None
    if not nodes:
        return None, "the cluster lists no nodes"
    return None, f"the cluster has {len(nodes)} nodes and none is named {hostname or '(unknown host name)'}"


def _str(obj: Any, *keys: str) -> str | None:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, str) and obj else None


def _node_state(dist: str, node: dict[str, Any]) -> K8sNode:
    status = node.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    ready_cond = next((c for c in conditions if isinstance(c, dict) and c.get("type") == "Ready"), None) \
        if isinstance(conditions, list) else None
    ready: bool | None = None
    reason = None
    if ready_cond is not None:
        flag = ready_cond.get("status")
        ready = True if flag == "True" else False if flag in ("False", "Unknown") else None
        if ready is not True:  # "Unknown": the control plane lost the kubelet; kubectl calls that NotReady
            words = [w for w in (_str(ready_cond, "reason"), _str(ready_cond, "message")) if w]
            reason = ": ".join(words) or None
    spec = node.get("spec")
    if ready and isinstance(spec, dict) and spec.get("unschedulable") is True:
        reason = "cordoned: no new pods are scheduled here (SchedulingDisabled)"
    return K8sNode(dist, _str(node, "metadata", "name"), ready, reason,
                   _str(node, "status", "nodeInfo", "kubeletVersion"))


def _from_table(dist: str, text: str, hostname: str | None) -> K8sNode | None:
    """`kubectl get node` without -o json: NAME STATUS ROLES AGE VERSION."""
    rows = [m for m in (_TABLE_STATUS.match(ln) for ln in text.splitlines()[1:]) if m]
    short = (hostname or "").split(".")[0].lower()
    row = next((m for m in rows if m.group("name").split(".")[0].lower() == short), rows[0] if len(rows) == 1 else None)
    if row is None:
        return None
    states = row.group("status").split(",")
    ready = True if "Ready" in states else False if "NotReady" in states or "Unknown" in states else None
    reason = "cordoned: no new pods are scheduled here (SchedulingDisabled)" if "SchedulingDisabled" in states \
        else None if ready else row.group("status")
    return K8sNode(dist, row.group("name"), ready, reason, row.group("version"))


def parse_k8s(tool: str, nodes: str, status: str = "", hostname: str | None = None) -> K8sNode | None:
    """The device's node from ``<tool> kubectl get nodes -o json``; None when no cluster tool is installed."""
    dist = _DISTRIBUTIONS.get(tool.strip().rsplit("/", 1)[-1])
    if dist is None:
        return None
    running, message = parse_microk8s_status(status) if dist == "microk8s" else (None, None)
    if running is False:
        return K8sNode(dist, None, False, message or "microk8s is not running")
    text = nodes[:MAX_NODES_JSON].strip()
    try:
        doc = json.loads(text) if text.startswith("{") else None
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict):
        items = doc.get("items") if doc.get("kind") == "List" else [doc]
        node, why = _pick_node(items if isinstance(items, list) else [], hostname)
        return _node_state(dist, node) if node is not None else K8sNode(dist, None, None, why)
    table = _from_table(dist, text, hostname) if text.startswith("NAME") else None
    if table is not None:
        return table
    return K8sNode(dist, None, None, _why_unread(text))


_LOG_LINE = re.compile(r"^([EWIF]\d{4} |WARN\[|INFO\[)")  # klog and logrus lines around the real message
_TELLING = re.compile(r"error|denied|refused|insufficient|unable|forbidden|timeout|not running", re.IGNORECASE)


def _why_unread(text: str) -> str:
    """The sentence that says why kubectl gave no nodes: not its retry logs, and the telling line of a paragraph."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not _LOG_LINE.match(ln.strip())]
    said = next((ln for ln in lines if _TELLING.search(ln)), lines[-1] if lines else "")
    if "localhost:8080" in said:  # no kubeconfig: a k3s agent, or the server never wrote one
        said = "no cluster configuration on this device (a k3s agent asks its server; look there)"
    return f"the node state could not be read: {said[:200]}" if said else "the node state could not be read"
