"""The Posture panel: a checklist with marks in words, the clock line, and the factory-password button."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from siteline.core.device.posture import Clock, Posture, PostureCheck
from siteline.ui.panels.posture_panel import PosturePanel, clock_sentence, headline

NOW = 1_795_784_322.0


def demo() -> Posture:
    checks = (
        PostureCheck("luks", "pass", "/data is on LUKS volume data", '{"blockdevices": []}'),
        PostureCheck("root_readonly", "pass", "/ is ext4, read-only", "/dev/root / ext4 ro,relatime 0 0"),
        PostureCheck("firewall_output", "fail", "outgoing traffic is accepted by default", "-P OUTPUT ACCEPT"),
        PostureCheck("ssh_passwords", "fail", "PasswordAuthentication yes (sshd -T)", "passwordauthentication yes"),
        PostureCheck("certificate", "fail", "/etc/ssl/device.crt expires in 20 days", "notAfter=Dec 17 2026 GMT"),
        PostureCheck("clock_sync", "pass", "synchronised (timedatectl)", "NTPSynchronized=yes"),
    )
    return Posture(checks=checks, clock=Clock(laptop_time=NOW, uncertainty_seconds=0.05, device_time=NOW - 3.2))


@pytest.fixture
def panel(qtbot) -> PosturePanel:
    widget = PosturePanel("gw-01")
    qtbot.addWidget(widget)
    widget.resize(900, 1100)
    return widget


@pytest.mark.parametrize(
    ("device_time", "words", "tone"),
    [(NOW - 3.2, "Device clock 3 s behind this laptop", "good"),
     (NOW + 600, "Device clock 10 min ahead of this laptop", "bad"),
     (NOW + 0.3, "Device clock agrees with this laptop (within a second)", "good"),
     (192.0, "Device thinks it is 1970: no real-time clock and no time sync", "bad"),
     (None, "Device clock: not known (the device did not print its time)", "warn")],
)
def test_clock_in_words(device_time: float | None, words: str, tone: str) -> None:
    assert clock_sentence(Clock(NOW, 0.05, device_time)) == (words, tone)


def test_headline_counts_unknown_as_not_verified() -> None:
    assert headline(list(demo().checks)) == ("✖ 3 of 6 checks FAIL", "bad")
    unknown = [PostureCheck("luks", "pass", ""), PostureCheck("certificate", "unknown", "")]
    assert headline(unknown) == ("? 1 of 2 checks pass; 1 not verified", "warn")
    assert headline(unknown[:1]) == ("✔ All 1 checks pass", "good")


def test_one_row_per_check_with_mark_title_reason_why_and_raw(panel: PosturePanel, qtbot) -> None:
    panel.show_posture(demo())
    assert list(panel.rows) == ["luks", "root_readonly", "firewall_output", "ssh_passwords", "certificate",
                                "clock_sync", "factory_credentials"]
    row = panel.rows["firewall_output"]
    assert row.mark.text() == "✖\nFAIL"  # a symbol and a word: never colour alone
    assert row.title.text() == "Outgoing traffic limited (OUTPUT policy DROP)"
    assert row.reason.text() == "Seen: outgoing traffic is accepted by default"
    assert row.why.text().startswith("Why it matters: Dropping outgoing traffic")
    assert panel.rows["luks"].mark.text() == "✔\nPASS"
    assert panel.rows["factory_credentials"].mark.text() == "?\nUNKNOWN"
    assert panel.headline.text() == "✖ 3 of 7 checks FAIL, 1 not verified"
    assert panel.clock.text() == "Device clock 3 s behind this laptop"
    panel.show()
    assert not row.raw.view.isVisible()
    qtbot.mouseClick(row.raw.toggle, Qt.MouseButton.LeftButton)
    assert row.raw.view.isVisible()
    assert row.raw.text() == "-P OUTPUT ACCEPT"


def test_factory_button_confirms_then_asks_and_the_result_stays(panel: PosturePanel, qtbot) -> None:
    panel.show_posture(demo())
    asked: list[str] = []
    panel.confirm = lambda text: asked.append(text) or False
    with qtbot.assertNotEmitted(panel.sig_factory_check_requested):
        qtbot.mouseClick(panel.factory_button, Qt.MouseButton.LeftButton)
    assert asked == ["This tries 5 factory passwords on gw-01 over SSH; a device with fail2ban may block this "
                     "laptop for a while."]
    panel.confirm = lambda _text: True
    with qtbot.waitSignal(panel.sig_factory_check_requested, timeout=1000):
        qtbot.mouseClick(panel.factory_button, Qt.MouseButton.LeftButton)
    assert not panel.factory_button.isEnabled()  # no second run while one is going
    result = PostureCheck("factory_credentials", "fail", "admin/admin is still accepted on gw-01",
                          "root/root: refused\nadmin/admin: accepted")
    panel.show_factory_result(result)
    assert panel.factory_button.isEnabled()
    assert panel.rows["factory_credentials"].mark.text() == "✖\nFAIL"
    panel.show_posture(demo())  # the next probe round does not make this check: the answer stays
    assert panel.rows["factory_credentials"].reason.text() == "Seen: admin/admin is still accepted on gw-01"
    assert panel.headline.text() == "✖ 4 of 7 checks FAIL"


def test_unavailable_says_why_with_the_raw_output(panel: PosturePanel) -> None:
    panel.show_posture(demo())
    panel.show_unavailable("the device printed none of the posture sections", "sh: syntax error")
    assert panel.problems.text() == "⚠ Could not read the security posture: the device printed none of the " \
                                    "posture sections"
    assert panel.raw.text() == "sh: syntax error"
    assert list(panel.rows) == ["factory_credentials"]  # the factory check needs no probe: still offered
    panel.show_posture(Posture(checks=(), clock=None, problems=("could not read the device's clock: x",)))
    assert "could not read the device's clock" in panel.problems.text()


def test_the_panel_paints(panel: PosturePanel, tmp_path: Path) -> None:
    panel.show_posture(demo())
    panel.show()
    started = time.monotonic()
    assert panel.grab().save(str(tmp_path / "posture.png"))
    assert time.monotonic() - started < 5
