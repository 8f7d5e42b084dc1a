"""Help text: a glossary (each term in one sentence a technician understands), one line per panel saying what
it shows, and the widgets that show them — a muted help line with a "?" and tooltips on labels that use a term.
Help ▸ Glossary… lists every term, searchable.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QPalette, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

# Term -> one sentence. No abbreviation dots inside a sentence: a test counts one full stop per entry.
GLOSSARY: dict[str, str] = {
    "RSRP": "Reference Signal Received Power: how strong the LTE/5G cell reaches the antenna, in dBm; "
            "above −90 is good, below −100 expect drops.",
    "RSRQ": "Reference Signal Received Quality: how much of the received signal is the cell rather than load or "
            "interference, in dB; above −10 is good, below −15 is poor.",
    "SNR/SINR": "Signal to (interference and) noise ratio: how far the signal stands above the noise, in dB; "
                "above 13 is good, below 0 the noise wins.",
    "RSSI": "Received Signal Strength Indicator: all the radio power the antenna picks up, wanted or not, in dBm, "
            "so it alone does not say the link is good.",
    "RSCP": "Received Signal Code Power: the 3G counterpart of RSRP, how strong the UMTS cell reaches the antenna.",
    "Registration": "Whether the mobile network has accepted the modem: home is normal, roaming may cost extra, "
                    "searching or denied means no service.",
    "APN": "Access Point Name: the name of the operator's data gateway the modem dials, printed on the SIM's "
           "paperwork; a wrong APN means registered but no data.",
    "IMEI": "The modem's unique hardware serial number, masked on screen because it identifies (and can be used "
            "to block or clone) this very device.",
    "SIM": "The operator's card in the modem; it must be present and unlocked (PIN) before the modem can register.",
    "Operator": "The mobile network the modem is registered on, by name and by its country and network code.",
    "Failover": "Switching traffic to the next link (cellular, Wi-Fi, another cable) when the preferred one fails, "
                "and back when it recovers.",
    "Metric": "A route's cost number: when several links are up, traffic takes the one with the lowest metric.",
    "Default route": "The path traffic to the internet takes out of the device; the link that holds it carries "
                     "everything not local.",
    "A/B slot": "Two copies of the system on the device: one runs while the other receives an update, so a bad "
                "update never leaves it without a working system.",
    "Booted slot": "The slot the device is running right now, which can differ from the primary slot after a "
                   "failed boot or a rollback.",
    "Primary slot": "The slot the bootloader will try first at the next boot; an update makes the new slot primary.",
    "Boot counter": "The number of tries left for a newly updated slot to boot and be marked good; at zero the "
                    "bootloader falls back to the other slot.",
    "Attempts left": "Same as the boot counter: how many more boots the new slot gets before the bootloader gives "
                     "up on it.",
    "Mark good": "Tell the bootloader the running slot works, which stops the boot counter and keeps the update.",
    "Mark bad": "Tell the bootloader the slot must not be booted again, so the next reboot goes to the other slot.",
    "Rollback": "Going back to the previous slot (the system before the update) when an update fails its checks.",
    "Canary": "The one device updated first in a rollout; the others follow only if it comes back healthy.",
    "Health check": "The checks Siteline runs after an update reboots (link up, services running, data flowing) "
                    "before it marks the slot good.",
    "Posture": "The device's security state at a glance: firewall, SSH settings, default passwords, disk "
               "encryption, read-only root, updates.",
    "Read-only root": "The system partition is mounted so nothing can write to it, which keeps it as it was "
                      "shipped and survives power cuts.",
    "LUKS": "Linux disk encryption: the data partition is unreadable without its key, so a stolen device or card "
            "gives nothing away.",
    "Outbox": "The queue on this laptop where every result, note and audit record waits until it reaches the "
              "control plane; nothing is lost offline.",
    "Control plane": "Your company's MQTT broker and the service behind it that collects what Siteline sends from "
                     "the field.",
    "Technician id": "Your name as Siteline records it on every action and every item sent, so the office knows "
                     "who did what.",
    "Data budget": "How many megabytes a month Siteline may send over a metered link; near the limit only audit "
                   "records and results go.",
    "Metered link": "A connection paid by the megabyte (a cellular plan), where Siteline batches and compresses "
                    "what it sends.",
    "Audit trail": "The tamper-evident list of every action taken on devices and on Siteline's trust, each record "
                   "chained to the one before.",
    "Host key fingerprint": "A short checksum of a device's SSH identity; if it changes the device was replaced "
                            "or someone is in between, so Siteline stops.",
    "Vault": "The encrypted file on this laptop that keeps device passwords, keys and the control plane's login "
             "under one passphrase.",
    "Target URL": "How Siteline reaches a device, written as one address such as serial:///dev/ttyUSB0 or "
                  "ssh://root@gw-01 with its options.",
    "Jump host/bastion": "A gateway machine Siteline logs in to first and goes through to reach a device that is "
                         "not reachable directly.",
    "Baud rate": "The speed of a serial cable in bits per second; both ends must use the same (often 115200) or "
                 "the console shows garbage.",
    "Serial console": "The device's text console over a cable, which works even when its network is down.",
    "Signed image": "An update file with a signature made by your ops team's key; Siteline refuses an image whose "
                    "signature does not match a trusted key.",
    "Bundle": "One update file (RAUC or SWUpdate) that holds the new system and the instructions to install it "
              "into the other slot.",
    "Bootloader": "The small program (U-Boot or GRUB) that starts first, picks the slot to boot and counts the "
                  "boot attempts.",
    "MQTT broker": "The message server devices and Siteline connect to, which passes messages between them by "
                   "topic.",
    "Topic": "The address of an MQTT message, written as levels separated by slashes, such as edge/site/device.",
    "Retained message": "A message the broker keeps and hands to everyone who subscribes later, such as a device's "
                        "last known state.",
    "QoS": "Quality of Service: 0 sends once with no check, 1 repeats until the broker confirms, 2 delivers "
           "exactly once.",
    "Journal": "The device's system log (journald or logread) where services and the kernel write what they do.",
    "Priority": "How serious a log line is, from debug and info through warning and error to critical.",
    "Uptime": "How long the device has run since its last boot; a short uptime you did not cause means it "
              "rebooted on its own.",
    "Hand-carry": "Exporting the outbox to a file to carry it on a USB stick when no network reaches the control "
                  "plane.",
}

PANEL_HELP: dict[str, tuple[str, tuple[str, ...]]] = {
    "overview": ("Who this device is, how long it has run, its health, storage and the link it uses, at a glance.",
                 ("Uptime", "Health check", "Booted slot", "Default route")),
    "modem": ("How good the cellular signal is now and over the last hour, and what the network and SIM say.",
              ("RSRP", "RSRQ", "SNR/SINR", "RSSI", "Registration", "Operator", "SIM", "IMEI", "APN")),
    "antenna": ("Turn the antenna slowly and watch the signal: the best position is kept and shown.",
                ("RSRP", "RSRQ", "SNR/SINR")),
    "network": ("Which links the device has, which one carries traffic now, and what takes over when it fails.",
                ("Failover", "Metric", "Default route", "APN")),
    "slots": ("The two system copies on the device, which one runs, which boots next and how many tries are left.",
              ("A/B slot", "Booted slot", "Primary slot", "Boot counter", "Mark good", "Mark bad", "Rollback")),
    "slot_action": ("Changes which system copy the device boots: read what happens before you confirm.",
                    ("Mark good", "Mark bad", "Primary slot", "Boot counter", "Rollback")),
    "posture": ("Whether the device is locked down as it should be, one check per line with how to fix it.",
                ("Posture", "Read-only root", "LUKS", "Host key fingerprint")),
    "timeline": ("What happened on the device over time: signal, link changes, reboots and updates on one axis.",
                 ("RSRP", "Failover", "Uptime", "Rollback")),
    "logs": ("The device's log as it is written, with filters by priority, unit and text.",
             ("Journal", "Priority")),
    "update": ("Flash a signed image into the other slot, check it after the reboot, and roll back if it fails.",
               ("Signed image", "Bundle", "A/B slot", "Health check", "Mark good", "Rollback", "Canary")),
    "console": ("A terminal on the device over its serial cable or SSH; what you type is kept in the audit trail.",
                ("Serial console", "Baud rate", "Audit trail", "Host key fingerprint")),
    "mqtt_explorer": ("Browse a broker's topics live, read a message's payload, and publish one.",
                      ("MQTT broker", "Topic", "Retained message", "QoS")),
    "outbox": ("What waits on this laptop to reach the control plane, what was sent, and what failed.",
               ("Outbox", "Control plane", "Data budget", "Metered link", "Hand-carry")),
    "audit": ("Every action on devices and on Siteline's trust, who did it and when, chained so edits show.",
              ("Audit trail", "Technician id", "Vault")),
    "paths": ("Every way this device can be reached, which one is used now, and what happened on each.",
              ("Target URL", "Jump host/bastion", "Baud rate", "Host key fingerprint")),
}


@dataclass(frozen=True)
class PanelHelp:
    key: str
    text: str
    terms: tuple[str, ...]


def panel_help(key: str) -> PanelHelp:
    text, terms = PANEL_HELP[key]
    return PanelHelp(key, text, terms)


def sentence(term: str) -> str:
    """The term's sentence (case-insensitive); KeyError for an unknown term, so a typo fails a test."""
    for name, text in GLOSSARY.items():
        if name.lower() == term.lower():
            return text
    raise KeyError(term)


def explain(widget: QWidget | None, term: str) -> None:
    """Put ``term``'s sentence on ``widget`` as its tooltip (None: nothing, for labels a layout may not have)."""
    if widget is not None:
        widget.setToolTip(sentence(term))
        widget.setWhatsThis(sentence(term))


def _muted(label: QLabel) -> None:
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)  # follows a light/dark switch by itself


class HelpLine(QWidget):
    """One muted, wrapped line saying what the panel shows, and a "?" listing its terms in the glossary."""

    def __init__(self, key: str, parent: QWidget | None = None, *, wrap: bool = True) -> None:
        super().__init__(parent)
        self.setObjectName(f"help_{key}")
        self.help = panel_help(key)
        self.label = QLabel(self.help.text)
        self.label.setObjectName("helpLine")
        self.label.setWordWrap(wrap)
        if not wrap:
            # One line whatever the width (the rest in the tooltip): above a terminal a wrapped line would
            # change the terminal's rows after a serial shell has been given its size, which it cannot learn.
            self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            self.label.setToolTip(self.help.text)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        _muted(self.label)
        self.button = QToolButton()
        self.button.setObjectName("helpButton")
        self.button.setText("?")
        self.button.setMinimumSize(36, 36)  # a gloved finger
        self.button.setToolTip("What the words on this panel mean: " + ", ".join(self.help.terms))
        self.button.setAccessibleName("Explain the terms on this panel")
        self.button.clicked.connect(self.show_terms)
        self.dialog: GlossaryDialog | None = None
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label, 1)
        row.addWidget(self.button, 0, Qt.AlignmentFlag.AlignTop)

    @property
    def text(self) -> str:
        return self.label.text()

    def show_terms(self) -> None:
        self.dialog = GlossaryDialog(self.help.terms, parent=self.window())
        self.dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.dialog.destroyed.connect(lambda _o=None: setattr(self, "dialog", None))
        self.dialog.show()


def term_row(*terms: str) -> QWidget:
    """Small term names in a row, each with its sentence as tooltip: "RSRP · RSRQ · SNR/SINR"."""
    row_widget = QWidget()
    row = QHBoxLayout(row_widget)
    row.setContentsMargins(0, 0, 0, 0)
    row.setSpacing(10)
    for term in terms:
        label = QLabel(f"<span style='text-decoration: underline dotted'>{term}</span>")
        label.setObjectName(f"term_{term.lower()}")
        label.setTextFormat(Qt.TextFormat.RichText)
        _muted(label)
        explain(label, term)
        row.addWidget(label)
    row.addStretch(1)
    return row_widget


class GlossaryDialog(QDialog):
    """Every term (or the ones given) with its sentence; the search field filters term and sentence."""

    def __init__(self, terms: tuple[str, ...] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("glossaryDialog")
        self.setWindowTitle("Glossary" if terms is None else "What these words mean")
        self.resize(760, 460)
        self.model = QStandardItemModel(0, 2, self)
        self.model.setHorizontalHeaderLabels(["Term", "Meaning"])
        chosen = [(t, sentence(t)) for t in terms] if terms else sorted(GLOSSARY.items(), key=lambda i: i[0].lower())
        for term, text in chosen:
            items = [QStandardItem(term), QStandardItem(text)]
            for item in items:
                item.setEditable(False)
                item.setToolTip(text)
            self.model.appendRow(items)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.search = QLineEdit()
        self.search.setObjectName("glossarySearch")
        self.search.setPlaceholderText("Search, e.g. RSRP or boot")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView()
        self.table.setObjectName("glossaryTable")
        self.table.setModel(self.proxy)
        self.table.setWordWrap(True)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        if terms is None:
            layout.addWidget(self.search)
        else:
            self.search.hide()
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)

    def visible_terms(self) -> list[str]:
        return [self.proxy.index(r, 0).data() for r in range(self.proxy.rowCount())]
