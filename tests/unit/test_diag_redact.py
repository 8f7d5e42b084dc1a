"""Secrets planted in every part of a diagnostics bundle never reach the zip; redaction never raises."""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteline.core import app_log
from siteline.core.diag.archive import Redactor, build_bundle, redact_obj
from siteline.core.diag.collect import Collected, CommandCost
from siteline.core.diag.redact import BLANK, mask_digits, redact_text, secret_name

IMEI = "356938035643809"  # Luhn-valid
ICCID = "89014103211118510720"
IMSI = "234150123456789"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
SECRETS = {
    "password": "Tr0ub4dor&3", "psk": "wifi-psk-8chars", "wpa": "hostapd-pass-77", "token": "tok_live_ABCDEF123",
    "url": "mqttPa55word", "bearer": "eyJhbGciOiJIUzI1NiJ9.payload.sig", "pem": PEM_BODY, "cmd": "sshpassSecret9",
    "json": "jsonSecretValue", "wg": "wgPrivKeyBase64xyz=", "nm": "nmcliPskValue", "spaced": "bridgeRemotePw",
    "imei": IMEI[8:], "iccid": ICCID[8:], "imsi": IMSI[8:],
}
CONFIG = f"""[wifi-security]
key-mgmt=wpa-psk
psk={SECRETS['psk']}
wpa_passphrase={SECRETS['wpa']}
password = "{SECRETS['password']}"
api_token: {SECRETS['token']}
remote_password {SECRETS['spaced']}
[Interface]
PrivateKey = {SECRETS['wg']}
-----BEGIN PRIVATE KEY-----
{PEM_BODY}
-----END PRIVATE KEY-----
"""
LOG = f"""2026-11-27T10:00:00Z gw mosquitto: bridge to mqtts://gw01:{SECRETS['url']}@cp.example:8883 up
2026-11-27T10:00:01Z gw curl: Authorization: Bearer {SECRETS['bearer']}
2026-11-27T10:00:02Z gw sudo: COMMAND=sshpass -p {SECRETS['cmd']} ssh admin@10.0.0.1
2026-11-27T10:00:03Z gw ModemManager: modem IMEI {IMEI}, SIM ICCID {ICCID}, IMSI: {IMSI}
2026-11-27T10:00:04Z gw NetworkManager: 802-11-wireless-security.psk:{SECRETS['nm']}
2026-11-27T10:00:05Z gw app: {{"password": "{SECRETS['json']}"}}
"""


@dataclass(frozen=True)
class FakeModem:
    manufacturer: str
    imei: str
    sim_identifier: str
    subscriber_identity: str
    apn_password: str


def planted() -> Collected:
    out = Collected(target="ssh://root@10.0.0.5", device="gw-01", started=0.0, finished=1.0)
    out.snapshots["modem"] = FakeModem("Quectel", IMEI, ICCID, IMSI, SECRETS["password"])
    out.texts.update(config=CONFIG, logs=LOG, **{"slots-raw": f"BOOT_ORDER=A B\nsecret_token={SECRETS['token']}\n"})
    out.commands.append(CommandCost("config", f"echo root:{SECRETS['cmd']} | chpasswd", 0, 0.1, 10))
    out.missing["logs"] = f"failed at mqtts://u:{SECRETS['url']}@host"
    return out


def test_planted_secrets_never_reach_any_member() -> None:
    own_log = f"2026-11-27 WARNING siteline: connecting mqtts://tech:{SECRETS['url']}@cp:8883\n"
    bundle = build_bundle(planted(), site="roof", own_log=own_log)
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as zf:
        names = zf.namelist()
        assert {"manifest.json", "README.txt", "areas/modem.json", "config/files.txt", "logs/device.txt",
                "siteline/siteline.log", "commands.txt"} <= set(names)
        for name in names:
            data = zf.read(name)
            for kind, secret in SECRETS.items():
                assert secret.encode() not in data, f"{kind} secret in {name}"
    assert bundle.data.count(b"PK") >= len(names)
    counts = bundle.manifest["redactions"]
    assert counts["pem"] == 1
    assert counts["url-login"] >= 3
    assert counts["identifier"] >= 3
    assert counts["value"] >= 6
    assert counts["bearer"] == 1
    assert counts["command"] >= 1


def test_identifiers_masked_like_the_gui_imei() -> None:
    text = redact_text(f"imei: {IMEI}\niccid {ICCID}\n").text
    assert mask_digits(IMEI) in text
    assert mask_digits(ICCID) in text
    assert mask_digits(IMEI) == IMEI[:8] + "*" * 7


@pytest.mark.parametrize("line", [
    "key_mgmt=WPA-PSK", "PasswordAuthentication no", "psk-flags=0", "BOOT_ORDER=A B", "ssh -p 2222 root@host",
    "__REALTIME_TIMESTAMP=1764250000000000", "-----BEGIN CERTIFICATE-----", '"key": "luks"',
    "ssh_passwords: passwordauthentication yes",
])
def test_ordinary_text_is_left_alone(line: str) -> None:
    assert redact_text(line).text == line


def test_secret_names() -> None:
    assert all(secret_name(n) for n in ("psk", "password", "wpa_passphrase", "PrivateKey", "mqtt_token", "wep_key0"))
    assert not any(secret_name(n) for n in ("key_mgmt", "psk-flags", "PasswordAuthentication", "password_ref"))


def test_json_values_under_secret_names_are_blanked() -> None:
    redactor = Redactor()
    got = redact_obj({"wifi": {"psk": "abc12345", "ssid": "site"}, "key": "luks", "flags": [f"imei {IMEI}"]}, redactor)
    assert got == {"wifi": {"psk": BLANK, "ssid": "site"}, "key": "luks", "flags": [f"imei {mask_digits(IMEI)}"]}
    assert redactor.counts["value"] == 1


def test_app_log_file_never_holds_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    app_log.uninstall()
    path = app_log.install(logging.INFO)
    try:
        assert path == tmp_path / "state" / "logs" / "siteline.log"
        logger = logging.getLogger("siteline.test_diag")
        logger.setLevel(logging.INFO)
        logger.info("connect %s", f"mqtts://u:{SECRETS['url']}@cp:8883")
        logger.info("wifi psk=%s ok", SECRETS["psk"])
        try:
            raise ValueError(f"password={SECRETS['password']}")
        except ValueError:
            logger.exception("failed")
    finally:
        app_log.uninstall()
    text = path.read_text(encoding="utf-8")
    assert "connect mqtts://u:***@cp:8883" in text
    assert "ValueError" in text
    assert not any(s in text for s in SECRETS.values())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_redact_text_never_raises(text: str) -> None:
    done = redact_text(text)
    assert isinstance(done.text, str)
    assert all(isinstance(n, int) and n > 0 for n in done.counts.values())


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="pskPASWORD=:\"' @/-_.\n0123456789abc{}[],;|&", max_size=200))
def test_redact_text_never_raises_on_secretish_text(text: str) -> None:
    assert isinstance(redact_text(text).text, str)


def test_app_log_keeps_the_terminal_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI shows warnings only; with the file installed at INFO the terminal still does, the file gets INFO."""
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    root = logging.getLogger()
    stream = io.StringIO()
    console = logging.StreamHandler(stream)
    old_level = root.level
    root.addHandler(console)
    root.setLevel(logging.WARNING)
    app_log.uninstall()
    try:
        path = app_log.install(logging.INFO)
        logging.getLogger("siteline.test_diag").info("only in the file")
        logging.getLogger("siteline.test_diag").warning("in both")
        app_log.uninstall()
        assert root.level == logging.WARNING
        assert console.level == logging.NOTSET
    finally:
        root.removeHandler(console)
        root.setLevel(old_level)
    assert stream.getvalue() == "in both\n"
    assert path is not None
    text = path.read_text(encoding="utf-8")
    assert "INFO siteline.test_diag: only in the file" in text
    assert "WARNING siteline.test_diag: in both" in text


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                        max_size=4), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_redact_obj_never_raises(value: object) -> None:
    redact_obj(value, Redactor())
