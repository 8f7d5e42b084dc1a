"""mqtts:// to a Mosquitto that wants a client certificate, with a plain and with an encrypted client key."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from tests.integration.test_outbox_sync_support import TECH, open_outbox
from tests.peers.pki import Pki

from siteline.core.outbox.model import NewItem
from siteline.core.outbox.settings import ControlPlaneSettings
from siteline.core.outbox.sync import Syncer, SyncError
from siteline.simulator.broker import BrokerHandle

pytestmark = [pytest.mark.peer("mosquitto"), pytest.mark.asyncio]


def _settings(broker: BrokerHandle, pki: Pki, key: Path, protocol: str = "5") -> ControlPlaneSettings:
    return ControlPlaneSettings(url=f"mqtts://127.0.0.1:{broker.port}", technician=TECH, ca=str(pki.ca),
                                cert=str(pki.client), key=str(key), protocol=protocol)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_sync_over_tls_with_a_client_certificate(tmp_path: Path, tls_broker: BrokerHandle, pki: Pki,
                                                       protocol: str) -> None:
    with open_outbox(tmp_path) as outbox:
        outbox.put(NewItem("audit", "site-a", "gw1", {"action": "flash"}))
        result = await Syncer(outbox, _settings(tls_broker, pki, pki.client_key, protocol)).drain(timeout=20)
        assert result.sent == 1
        # TLS records are counted on top of the MQTT bytes
        assert result.bytes > len(outbox.items()[0].payload) + 2 * 22


async def test_an_encrypted_client_key_is_opened_with_its_passphrase(tmp_path: Path, tls_broker: BrokerHandle,
                                                                     pki: Pki) -> None:
    locked = tmp_path / "client-locked.key"
    await asyncio.to_thread(subprocess.run, ["openssl", "pkey", "-in", str(pki.client_key), "-aes256", "-passout",
                                             "pass:open sesame", "-out", str(locked)], check=True, timeout=30)
    with open_outbox(tmp_path) as outbox:
        outbox.put(NewItem("audit", "site-a", "gw1", {"action": "flash"}))
        settings = _settings(tls_broker, pki, locked)
        with pytest.raises(SyncError) as err:
            await Syncer(outbox, settings).drain(timeout=20)  # never a prompt on the terminal
        assert err.value.kind == "config"
        assert "passphrase in the vault" in err.value.hint
        result = await Syncer(outbox, settings, key_passphrase="open sesame").drain(timeout=20)
        assert result.sent == 1


async def test_an_untrusted_broker_certificate_is_refused(tmp_path: Path, tls_broker: BrokerHandle,
                                                          pki: Pki) -> None:
    with open_outbox(tmp_path) as outbox:
        outbox.put(NewItem("audit", "site-a", "gw1", {"action": "flash"}))
        settings = ControlPlaneSettings(url=f"mqtts://127.0.0.1:{tls_broker.port}", technician=TECH,
                                        ca=str(pki.other_ca), cert=str(pki.client), key=str(pki.client_key))
        with pytest.raises(SyncError) as err:
            await Syncer(outbox, settings).drain(timeout=20)
        assert "not signed by the CA" in err.value.message
        assert outbox.status().pending == 1
