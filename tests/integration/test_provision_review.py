"""Review findings against simulated devices (real serial pty / SSH, real openssl on the device)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from tests.peers import require_tool
from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.core.errors import TransportError
from siteline.core.provisioning import identity
from siteline.core.provisioning.api import StepContext, StepOutcome
from siteline.core.provisioning.certificates import PendingStore
from siteline.core.provisioning.device_steps import identify_step, names_step
from siteline.core.provisioning.identity import identity_step
from siteline.core.provisioning.job import ProvisionJob
from siteline.core.provisioning.link import TransportProvisionLink
from siteline.core.provisioning.profile import CertificatePolicy, Profile, find_profile, load_profile
from siteline.core.provisioning.runner import KeepHooks, run_provision
from siteline.core.provisioning.store import ProvisionStore
from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.factory import open_transport

pytestmark = pytest.mark.asyncio

SITE = "north-7"


def _link(target: Target, known: Path) -> TransportProvisionLink:
    return TransportProvisionLink(target, Credentials("root", PASSWORD), lambda c: open_transport(
        target, c, known, accept_new_host_key=True), known_hosts=known, connect_timeout=15)


async def _cable_pulled(ctx: StepContext) -> StepOutcome:
    raise TransportError("the serial port went away", "Reconnect the cable.")


async def test_a_resumed_job_checks_it_is_the_same_device_before_changing_anything(tmp_path: Path) -> None:
    """Serial targets are a port (serial:///dev/ttyUSB0), the same for every box the technician plugs in. Job for
    device A is cut after "identify"; the technician plugs device B into the same adapter and runs the same command:
    the CLI resumes A's job (found by target) and the runner starts at "names", so identify (which alone compares the
    serial/MAC with the job's facts) never runs again. B gets A's hostname, A's key/CSR/record identity and keeps its
    factory password if the cut came after "credentials". Every resume must re-check the device first."""
    profile = load_profile(find_profile("nwedge-gw-imx8mm"))
    store = ProvisionStore(tmp_path / "jobs")
    tty = tmp_path / "ttyUSB0"
    target = parse_target(f"serial://{tty}?baud=115200")
    job = ProvisionJob.new(target=str(target), site=SITE, profile_name=profile.name, profile_sha256=profile.sha256)
    state_a = make_state(tmp_path / "a", name="gw-aaaa")
    async with running_device(state_a, ssh=False, serial_link=tty):
        link = _link(target, tmp_path / "known_hosts")
        try:
            job = await run_provision(job, link, profile, store=store, keep_hooks=KeepHooks(),
                                      steps=[("identify", identify_step), ("names", _cable_pulled)])
        finally:
            await link.close()
    assert job.status == "interrupted"
    a_device, a_serial = job.device, job.facts["serial"]
    job = store.load(job.id)
    state_b = make_state(tmp_path / "b", name="gw-bbbb")
    async with running_device(state_b, ssh=False, serial_link=tty):
        link = _link(target, tmp_path / "known_hosts")
        try:
            serial_b = (await link.run("cat /proc/device-tree/serial-number", 10)).stdout.strip("\0\n ")
            assert serial_b
            assert serial_b != a_serial, "the two simulated devices need different serials"
            job = await run_provision(job, link, profile, store=store, keep_hooks=KeepHooks(),
                                      steps=[("identify", identify_step), ("names", names_step)])
            hostname_b = (await link.run("hostname", 10)).stdout.strip()
        finally:
            await link.close()
    assert hostname_b != a_device, f"device B (serial {serial_b}) was renamed {hostname_b} as device A"
    assert job.status == "refused"


async def test_a_crash_right_after_the_csr_is_queued_does_not_queue_it_twice(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's outbox hook saves job.data["queued"]["identity:csr"] the moment the CSR is queued, but the
    identity step never looks there (only the record step does): it trusts data["identity"]["csr_item"] and the
    pending-certificate store, both written AFTER outbox_put returns. A Siteline killed in between (laptop battery)
    queues the same CSR again on resume: the CA signs two certificates for one key."""
    require_tool("openssl")
    store = PendingStore(tmp_path / "pending.json")
    monkeypatch.setattr(identity, "pending_store", lambda: store)
    state = make_state(tmp_path / "dev", name="gw-csr")
    policy = CertificatePolicy(subject="/CN={device}/OU={site}")
    profile = Profile("p", ("*",), certificate=policy)
    job = ProvisionJob.new(target="device", site=SITE, profile_name="p", profile_sha256="0")
    job.device, job.facts = "nw-csr001", {"serial": "NWGCSR001"}
    queued: list[tuple[str, Mapping[str, Any]]] = []
    saved: list[str] = []

    def put(kind: str, payload: Mapping[str, Any]) -> str:  # what runner._saving_put does around the outbox
        queued.append((kind, payload))
        item = f"item-{len(queued)}"
        job.data.setdefault("queued", {})[f"identity:{kind}"] = item
        saved.append(job.to_json())
        return item

    async with running_device(state, ssh=True) as device:
        target = parse_target(f"ssh://root@127.0.0.1:{device.ssh_port}")
        link = _link(target, tmp_path / "known_hosts")
        try:
            await identity_step(StepContext(job=job, profile=profile, link=link, step="identity", outbox_put=put))
            assert len(queued) == 1
            # Killed right after that save: the job on disk is the one saved in the hook; the pending store was
            # written after it, so it is as before (empty).
            resumed = ProvisionJob.from_json(saved[-1])
            store.path.unlink(missing_ok=True)

            def put_again(kind: str, payload: Mapping[str, Any]) -> str:
                queued.append((kind, payload))
                return f"item-{len(queued)}"

            await identity_step(StepContext(job=resumed, profile=profile, link=link, step="identity",
                                            outbox_put=put_again))
        finally:
            await link.close()
    assert [k for k, _ in queued] == ["csr"], "the same CSR was queued twice"


def _type_login_by_hand(tty: Path, user: str, password: str) -> None:
    """A person at the cabinet logged in on the console and left it at a shell prompt (or the device's getty
    logs root in by itself, as many factory images do)."""
    import os
    import select
    import time

    fd = os.open(str(tty), os.O_RDWR | os.O_NOCTTY)
    try:
        seen = b""

        def until(marker: bytes, timeout: float = 10.0) -> None:
            nonlocal seen
            end = time.monotonic() + timeout
            while marker not in seen:
                left = end - time.monotonic()
                assert left > 0, f"console never showed {marker!r}: {seen[-200:]!r}"
                if select.select([fd], [], [], left)[0]:
                    seen += os.read(fd, 4096)
            seen = b""

        os.write(fd, b"\r")
        until(b"login: ")
        time.sleep(0.5)  # the simulated getty drops what follows a CR in one read: let the second prompt come
        while select.select([fd], [], [], 0.1)[0]:
            os.read(fd, 4096)
        os.write(fd, user.encode() + b"\r")
        until(b"Password: ")
        os.write(fd, password.encode() + b"\r")
        until(b"Last login")
        time.sleep(0.3)
    finally:
        os.close(fd)


async def test_a_proof_login_on_a_console_left_logged_in_does_not_accept_any_password(tmp_path: Path) -> None:
    """link.try_login over serial closes the working console and opens a trial one with the password under test;
    serial_login.login() answers a console already at a shell prompt with "logged in" WITHOUT typing a password.
    On a console a person left logged in (or with getty autologin), every password is "accepted": the credentials
    step's proof is meaningless (the new one is "accepted" though never checked; the factory one too, so the step
    fails with a misleading "may check passwords elsewhere (LDAP)"), and a resume's _takes() skips chpasswd."""
    import asyncio

    state = make_state(tmp_path / "dev", name="gw-open")
    tty = tmp_path / "ttyGW"
    async with running_device(state, ssh=False, serial_link=tty):
        await asyncio.to_thread(_type_login_by_hand, tty, "root", PASSWORD)
        target = parse_target(f"serial://{tty}?baud=115200")
        link = _link(target, tmp_path / "known_hosts")
        try:
            assert (await link.run("true", 10)).ok
            accepted = await link.try_login(Credentials("root", "certainly-not-the-password"), 15)
        finally:
            await link.close()
    assert not accepted, "a wrong password was 'proven' accepted on a console that was already logged in"


def _cert_for(public_key: Any, ca_key: Any, days: int = 20) -> str:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nw-000042")]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


async def test_a_stale_certificate_for_a_replaced_key_never_overwrites_the_working_one(tmp_path: Path) -> None:
    """install_certificate checks the certificate against the key hash in the laptop's pending store, writes it over
    cert_path, and only THEN asks the device's openssl whether it fits the key there (certificates.py:159 vs 221).
    When the key was replaced since (re-provisioned from another laptop, which also installed a good certificate),
    this laptop's next connection installs the stale certificate over the working one and only then reports the
    mismatch: the device's MQTT TLS is broken until someone re-runs identity. Check the device's key first."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from siteline.core.errors import SitelineError
    from siteline.core.provisioning.certificates import install_certificate, public_key_sha256
    from siteline.simulator import rootfs

    require_tool("openssl")
    policy = CertificatePolicy()
    ca = ec.generate_private_key(ec.SECP256R1())
    old_key = ec.generate_private_key(ec.SECP256R1())  # the key the CSR this laptop queued was for
    state = make_state(tmp_path / "dev", name="gw-cert")
    async with running_device(state, ssh=True) as device:
        target = parse_target(f"ssh://root@127.0.0.1:{device.ssh_port}")
        link = _link(target, tmp_path / "known_hosts")
        try:
            made = await link.run(f"mkdir -p /etc/siteline && umask 077 && openssl genpkey -algorithm EC -pkeyopt "
                                  f"ec_paramgen_curve:P-256 -out {policy.key_path} && openssl pkey -pubout -in "
                                  f"{policy.key_path}", 30)
            assert made.ok, made.stderr
            from cryptography.hazmat.primitives import serialization

            new_public = serialization.load_pem_public_key(made.stdout.encode())
            good = _cert_for(new_public, ca)
            put = await link.run(f"printf '%s' '{good}' > {policy.cert_path}", 30)
            assert put.ok, put.stderr
            stale = _cert_for(old_key.public_key(), ca)
            doc = {"v": 1, "site": SITE, "device": "nw-000042", "certificate": stale, "chain": []}
            try:
                result = await install_certificate(link.run, doc, policy, public_key_sha256(stale))
                installed = result.installed
            except SitelineError:
                installed = False
        finally:
            await link.close()
    assert not installed
    on_device = rootfs.device_file(state.root, policy.cert_path).read_text()
    assert on_device.strip() == good.strip(), "the working certificate was overwritten by one for a replaced key"
