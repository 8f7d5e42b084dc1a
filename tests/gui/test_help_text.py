"""Help text: every panel shows a one-line help with a "?", the glossary's sentences are single short sentences,
the issue's terms are there, and labels that use a term carry its sentence as their tooltip."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel, QWidget

from siteline.core.audit import AuditTrail
from siteline.core.device.slot_actions import SlotAction
from siteline.core.outbox.store import Outbox
from siteline.core.plugins import PluginHost
from siteline.ui.help_text import GLOSSARY, PANEL_HELP, GlossaryDialog, HelpLine, sentence


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox.open(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def _action() -> SlotAction:
    return SlotAction(verb="mark-good", slot="A", slot_name="rootfs.0", backend="rauc",
                      commands=("rauc status mark-good",), effect="Slot A is kept.", risk="low",
                      typed_confirmation=False, check=None)


def _panels(outbox: Outbox) -> dict[str, Callable[[], QWidget]]:
    from siteline.ui.audit_view import AuditView
    from siteline.ui.console_tab import ConsoleTab
    from siteline.ui.device_page import DevicePage
    from siteline.ui.logs.device_logs import DeviceLogsTab
    from siteline.ui.mqtt_explorer import MqttExplorer
    from siteline.ui.outbox_panel import OutboxPanel
    from siteline.ui.overview_tab import OverviewTab
    from siteline.ui.panels.antenna_window import AntennaWindow
    from siteline.ui.panels.modem_panel import ModemPanel
    from siteline.ui.panels.network_panel import NetworkPanel
    from siteline.ui.panels.posture_panel import PosturePanel
    from siteline.ui.panels.slot_action_dialog import SlotActionDialog
    from siteline.ui.panels.slots_panel import SlotsPanel
    from siteline.ui.panels.timeline_panel import TimelinePanel
    from siteline.ui.update_tab import UpdateTab

    async def no_sample() -> None:
        return None

    return {
        "overview": OverviewTab, "modem": ModemPanel, "antenna": lambda: AntennaWindow(no_sample),
        "network": NetworkPanel, "slots": SlotsPanel, "slot_action": lambda: SlotActionDialog(_action(), "gw-01"),
        "posture": PosturePanel, "timeline": TimelinePanel, "logs": DeviceLogsTab, "update": UpdateTab,
        "console": ConsoleTab, "mqtt_explorer": MqttExplorer, "outbox": lambda: OutboxPanel(outbox),
        "audit": lambda: AuditView(AuditTrail(outbox, "ana")), "paths": lambda: DevicePage(PluginHost()),
    }


def test_every_panel_shows_its_help_line(qtbot, outbox: Outbox) -> None:
    makers = _panels(outbox)
    assert set(makers) == set(PANEL_HELP)
    for key, make in makers.items():
        panel = make()
        qtbot.addWidget(panel)
        line = panel.findChild(HelpLine, f"help_{key}")
        assert line is not None, f"{type(panel).__name__} has no help line"
        assert line.text == PANEL_HELP[key][0]
        assert line.text.strip()
        assert line.label.wordWrap() or key == "console"  # above a terminal: one line, rows stay put
        assert line.button.text() == "?"
        line.button.click()  # the "?" lists this panel's terms
        assert line.dialog is not None
        assert line.dialog.visible_terms() == list(PANEL_HELP[key][1])
        line.dialog.close()


@pytest.mark.parametrize("term", sorted(GLOSSARY))
def test_each_glossary_entry_is_one_short_sentence(term: str) -> None:
    text = GLOSSARY[term]
    assert text.endswith("."), text
    assert text.count(".") == 1, text
    assert len(text) < 200, len(text)
    assert text[0].isupper()


def test_the_issue_terms_are_there() -> None:
    for term in ("RSRP", "Boot counter", "Mark good", "RSRQ", "SNR/SINR", "RSSI", "Registration", "APN", "IMEI",
                 "Failover", "Metric", "A/B slot", "Booted slot", "Primary slot", "Attempts left", "Mark bad",
                 "Rollback", "Canary", "Health check", "Posture", "Read-only root", "LUKS", "Outbox", "Data budget",
                 "Host key fingerprint", "Vault", "Target URL", "Jump host/bastion", "Baud rate"):
        assert sentence(term)
    assert "masked" in sentence("imei")
    for _key, (text, terms) in PANEL_HELP.items():
        assert text.endswith(".")
        assert len(text) < 160
        assert all(sentence(t) for t in terms)


def test_modem_rsrp_label_tooltip_is_the_glossary_sentence(qtbot) -> None:
    from siteline.ui.panels.modem_panel import ModemPanel

    panel = ModemPanel()
    qtbot.addWidget(panel)
    label = panel.findChild(QLabel, "term_rsrp")
    assert label is not None
    assert label.toolTip() == GLOSSARY["RSRP"]
    tips = {lab.text(): lab.toolTip() for lab in panel.findChildren(QLabel)}
    assert tips["IMEI:"] == GLOSSARY["IMEI"]
    assert tips["Registration:"] == GLOSSARY["Registration"]


def test_glossary_dialog_lists_every_term_and_searches(qtbot) -> None:
    dialog = GlossaryDialog()
    qtbot.addWidget(dialog)
    assert len(dialog.visible_terms()) == len(GLOSSARY)
    dialog.search.setText("boot")
    shown = dialog.visible_terms()
    assert "Boot counter" in shown
    assert "RSRP" not in shown
    dialog.search.setText("cell")  # the sentences are searched too
    assert "RSRP" in dialog.visible_terms()
