"""The device's certificate coming back: checked, installed at the next connection, its expiry reported.

The CSR goes out through the outbox (identity step); the control plane's CA answers on a later sync with a
retained message that the inbound cache validates and keeps. Nothing installs it then: the device is not
connected. ``pickup_on_connect`` (wired into every connection) finds the pending device, and
``install_certificate`` checks the certificate on the laptop (its key is the device's own key, it is valid now
by the laptop's clock AND the device's, unless the device's clock is plainly unset, and it is issued under the
CA the profile pins, certificate.ca_sha256), checks the key ON the device now is the certificate's (a key replaced
since must not lose its working certificate to a stale one), installs certificate and chain atomically (temp
files, fsync, one rename each), and checks them again with the device's own openssl.
Short-lived certificates are the goal, so the result always says when it ends and when renewal is due.

The store of pending certificates (<data>/provisioning/pending-certificates.json) holds no secret: where the
key and certificate live on the device, the key's public hash, the CSR's hash, what was installed last.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shlex
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siteline import paths
from siteline.core.atomic import write_atomic
from siteline.core.provisioning.api import WRITE_CHUNK, Record, StepFailedError
from siteline.core.provisioning.profile import CertificatePolicy
from siteline.core.transports.base import Result

if TYPE_CHECKING:
    from siteline.core.outbox.inbound import InboundCache

Run = Callable[[str, float], Awaitable[Result]]  # (command, timeout) -> Result on the device
TIMEOUT = 30.0
LONG_LIVED_DAYS = 90.0  # longer than this is noted: short-lived certificates make renewal routine
UNSET_CLOCK = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)  # a device clock before this was never set (1970, RTC reset)
CERTIFICATE_ACTION = "provision-certificate"
STORE_VERSION = 1


@dataclass(frozen=True)
class CertificateResult:
    installed: bool
    detail: str  # one line for the technician: "installed; expires in 29 days (2026-12-26)"
    public_key_sha256: str = ""
    certificate_sha256: str = ""
    not_after: str = ""  # ISO 8601 UTC
    days_left: float | None = None
    renew_due: bool = False
    notes: tuple[str, ...] = ()  # "the device's clock says 1970-01-01: not trusted", "valid for 365 days"
    retry: bool = False  # refused for now only (not valid yet): worth trying again at a later connection

    def evidence(self) -> dict[str, Any]:
        return {"installed": self.installed, "detail": self.detail, "public_key_sha256": self.public_key_sha256,
                "certificate_sha256": self.certificate_sha256, "not_after": self.not_after,
                "days_left": None if self.days_left is None else round(self.days_left, 2),
                "renew_due": self.renew_due, "notes": list(self.notes)}


# -- small X.509 helpers (cryptography, imported when needed: it is slow to load) ---------------------------------
def public_key_sha256(pem: bytes | str) -> str:
    """sha256 of the DER SubjectPublicKeyInfo of a certificate, CSR, public or private key (PEM); ValueError."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = pem.encode() if isinstance(pem, str) else pem
    try:
        if b"CERTIFICATE REQUEST" in data:
            key: Any = x509.load_pem_x509_csr(data).public_key()
        elif b"BEGIN CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        elif b"PUBLIC KEY" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_pem_private_key(data, password=None).public_key()
    except (UnsupportedAlgorithm, TypeError) as exc:  # device text: every failure is "not a usable key" (ValueError)
        raise ValueError(f"not a usable key: {str(exc)[:120]}") from None
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def days_text(days: float) -> str:
    if days < 0:
        return f"expired {-days:.0f} days ago" if days <= -1 else "expired"
    if days < 1:
        hours = max(1, round(days * 24))
        return f"expires in {hours} hour{'s' if hours != 1 else ''}"
    return f"expires in {days:.0f} day{'s' if round(days) != 1 else ''}"


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# -- checking and installing ---------------------------------------------------------------------------------------
def _refused(detail: str, **kw: Any) -> CertificateResult:
    return CertificateResult(False, detail, **kw)


async def device_clock(run: Run) -> dt.datetime | None:
    """The device's UTC clock, or None when it gave no number."""
    result = await run("date -u +%s", TIMEOUT)
    text = result.stdout.strip().splitlines()[-1:] if result.ok else []
    try:
        return dt.datetime.fromtimestamp(int(text[0]), dt.UTC) if text else None
    except (ValueError, OverflowError, OSError):
        return None


def _validity(cert: Any, clocks: Mapping[str, dt.datetime]) -> str:
    """'' when ``cert`` is valid by every clock in ``clocks`` ({"laptop": ..., "device": ...}), else why not."""
    start, end = _utc(cert.not_valid_before_utc), _utc(cert.not_valid_after_utc)
    for who, now in clocks.items():
        if now < start:
            return (f"it is not valid yet by the {who}'s clock (from {start:%Y-%m-%d %H:%M} UTC, "
                    f"now {now:%Y-%m-%d %H:%M})")
        if now >= end:
            return f"it expired {end:%Y-%m-%d %H:%M} UTC by the {who}'s clock"
    return ""


async def install_certificate(run: Run, doc: Mapping[str, Any], policy: CertificatePolicy,
                              expected_public_key_sha256: str, *, change: Run | None = None,
                              dry_run: bool = False) -> CertificateResult:
    """Check ``doc`` (the inbound certificate document) and install it on the device.

    ``run`` reads; ``change`` (default ``run``) makes the changes, so a step passes ctx.change and a dry run
    only plans them (``dry_run``: nothing is checked on the device afterwards). A refusal is a result with
    ``installed=False`` and the reason; a link that drops raises TransportError; a device that cannot write the
    files raises StepFailedError."""
    from cryptography import x509

    write = change or run
    try:
        pem = str(doc["certificate"]).encode()
        cert = x509.load_pem_x509_certificate(pem)
        chain = [str(c).encode() for c in (doc.get("chain") or [])]
        chain_certs = [x509.load_pem_x509_certificate(item) for item in chain]
    except (KeyError, ValueError, TypeError) as exc:
        return _refused(f"refused: the certificate document cannot be read ({str(exc)[:120]})")
    cert_sha = hashlib.sha256(pem).hexdigest()
    key_sha = public_key_sha256(pem)
    base: dict[str, Any] = {"public_key_sha256": key_sha, "certificate_sha256": cert_sha,
            "not_after": _utc(cert.not_valid_after_utc).isoformat()}
    if key_sha != expected_public_key_sha256:
        return _refused("refused: the certificate is for another key than the device's (a certificate for an "
                        "older key, or for another device)", **base)
    untrusted = ca_problem(cert, chain_certs, policy.ca_sha256) if policy.ca_sha256 else ""
    if untrusted:
        return _refused(f"refused: {untrusted}", **base)
    clocks, notes = await _clocks(run)
    laptop = clocks["laptop"]
    invalid = _validity(cert, clocks)
    if invalid:
        return _refused(f"refused: {invalid}", notes=tuple(notes), retry="not valid yet" in invalid, **base)
    # The device's key NOW, before anything is written: a certificate for a key replaced since (another laptop
    # re-provisioned it and installed its own) must never overwrite the working one.
    device_sha, how = await device_public_key_sha256(run, policy)
    if not device_sha:
        notes.append(f"the device's key could not be read ({how}): checked against the key hash kept on this "
                     "computer only")
    elif device_sha != key_sha:
        return _refused(f"refused: the key at {policy.key_path} on the device was replaced since this request "
                        f"({how}); the certificate there now was left as it is", notes=tuple(notes), **base)
    lifetime = (_utc(cert.not_valid_after_utc) - _utc(cert.not_valid_before_utc)).total_seconds() / 86400
    if lifetime > LONG_LIVED_DAYS:
        notes.append(f"valid for {lifetime:.0f} days: short-lived certificates (at most {LONG_LIVED_DAYS:.0f}) make "
                     "renewal routine")
    await _write_files(write, [(policy.cert_path, pem), *([(policy.chain_path, b"".join(chain))] if chain else [])])
    if not dry_run:
        notes.extend(await _check_on_device(run, policy, cert))
    days = (_utc(cert.not_valid_after_utc) - laptop).total_seconds() / 86400
    due = days < policy.renew_days
    detail = f"installed at {policy.cert_path}; {days_text(days)} ({_utc(cert.not_valid_after_utc):%Y-%m-%d})"
    if due:
        detail += f"; renewal due (less than {policy.renew_days:g} days left)"
    if not policy.ca_sha256:
        detail += "; CA not pinned (its issuer was not checked: set certificate.ca_sha256 in the profile)"
    return CertificateResult(True, detail, days_left=days, renew_due=due, notes=tuple(notes), **base)


def _issued_by(cert: Any, issuer: Any) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: Any) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def ca_problem(cert: Any, chain: list[Any], pin: str) -> str:
    """'' when ``cert`` is signed by the CA whose SHA-256 fingerprint is ``pin`` (a certificate in ``chain``),
    directly or through CA certificates of the chain; else what is wrong (signatures checked with cryptography)."""
    from cryptography.hazmat.primitives import hashes

    want = pin.replace(":", "").lower()
    ca = next((c for c in chain if c.fingerprint(hashes.SHA256()).hex() == want), None)
    if ca is None:
        return ("its chain does not carry the CA the profile trusts (certificate.ca_sha256 "
                f"{want[:16]}...): it may come from another CA")
    current = cert
    for _ in range(len(chain)):
        if _issued_by(current, ca):
            return ""
        parent = next((c for c in chain if c is not current and c is not ca and _is_ca(c) and _issued_by(current, c)),
                      None)
        if parent is None:
            break
        current = parent
    return "it is not signed by the CA the profile trusts (certificate.ca_sha256), though its chain names that CA"


async def device_public_key_sha256(run: Run, policy: CertificatePolicy) -> tuple[str, str]:
    """(hash, how it was learnt) of the public half of the key at key_path on the device now, never reading the
    private key off it: its openssl's `pkey -pubout`, else the certificate request beside it (public). ('', why)
    when neither tells."""
    q = shlex.quote
    if (await run("command -v openssl", TIMEOUT)).stdout.strip():
        own = await run(f"openssl pkey -pubout -in {q(policy.key_path)}", TIMEOUT)
        how = "read by the device's openssl"
        text = own.stdout if own.ok else ""
    else:
        csr = await run(f"cat {q(policy.csr_path)} 2>/dev/null", TIMEOUT)
        how = f"from the certificate request at {policy.csr_path}"
        text = csr.stdout if csr.ok and "CERTIFICATE REQUEST" in csr.stdout else ""
    if not text.strip():
        return "", "no openssl answer and no certificate request" if "request" in how else "openssl could not read it"
    try:
        return public_key_sha256(text), how
    except ValueError:
        return "", f"unreadable, {how}"


async def _clocks(run: Run) -> tuple[dict[str, dt.datetime], list[str]]:
    """The clocks a certificate must be valid by: the laptop's, and the device's unless it is plainly unset."""
    clocks, notes = {"laptop": dt.datetime.now(dt.UTC)}, []
    device_now = await device_clock(run)
    if device_now is None:
        notes.append("the device's clock could not be read")
    elif device_now < UNSET_CLOCK:
        notes.append(f"the device's clock says {device_now:%Y-%m-%d}: not set, not trusted (set it, e.g. with NTP; "
                     "TLS on the device fails until it is)")
    else:
        clocks["device"] = device_now
    return clocks, notes


async def _write_files(write: Run, files: list[tuple[str, bytes]]) -> None:
    """Every file to a temp beside it first; then all renamed in one command (a cut leaves old or new, not a mix)."""
    q = shlex.quote
    for path, data in files:
        tmp = f"{path}.siteline-tmp"
        directory = path.rsplit("/", 1)[0] or "/"
        _ok(await write(f"mkdir -p {q(directory)} && : > {q(tmp)} && chmod 644 {q(tmp)}", TIMEOUT), f"create {tmp}")
        for start in range(0, len(data), WRITE_CHUNK):
            chunk = base64.b64encode(data[start:start + WRITE_CHUNK]).decode()
            _ok(await write(f"printf %s {chunk} | base64 -d >> {q(tmp)}", TIMEOUT), f"write {tmp}")
    moves = " && ".join(f"mv -f {q(p + '.siteline-tmp')} {q(p)}" for p, _ in files)
    _ok(await write(f"sync; {moves} && sync", TIMEOUT), "move the certificate into place")


def _ok(result: Result, doing: str) -> None:
    if not result.ok:
        why = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit status {result.exit_code}"]
        raise StepFailedError(f"The device could not {doing}: {why[0][:200]}",
                              "Check the device has space and a writable /etc, then connect again.")


async def _check_on_device(run: Run, policy: CertificatePolicy, cert: Any) -> list[str]:
    """The device's openssl reads the installed certificate back: its end date, and that it fits the device's key."""
    q = shlex.quote
    if not (await run("command -v openssl", TIMEOUT)).stdout.strip():
        return ["the device has no openssl: the installed certificate was not checked there"]
    end = await run(f"openssl x509 -noout -enddate -in {q(policy.cert_path)}", TIMEOUT)
    want = _utc(cert.not_valid_after_utc)
    seen = end.stdout.strip().partition("=")[2]
    try:
        got = dt.datetime.strptime(seen, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.UTC)
    except ValueError:
        got = None
    if not end.ok or got != want:
        shown = seen[:80] or f"exit {end.exit_code}"
        raise StepFailedError(f"The device's openssl does not read the installed certificate back ({shown}).",
                              "Check the device's storage, then connect again.")
    cert_key = await run(f"openssl x509 -noout -pubkey -in {q(policy.cert_path)}", TIMEOUT)
    own_key = await run(f"openssl pkey -pubout -in {q(policy.key_path)}", TIMEOUT)
    if not own_key.ok:
        return [f"the device's key at {policy.key_path} could not be read to match the certificate"]
    if cert_key.stdout.strip() != own_key.stdout.strip():
        raise StepFailedError(f"The certificate installed at {policy.cert_path} does not fit the key at "
                              f"{policy.key_path} on the device (the key was replaced since the CSR).",
                              "Run the provisioning's identity step again: it sends a CSR for the key there now.")
    return []


# -- the store of devices waiting for a certificate ----------------------------------------------------------------
@dataclass
class PendingCertificate:
    site: str
    device: str
    public_key_sha256: str
    csr_sha256: str = ""
    csr_item: str = ""  # the outbox item that carried the CSR
    job: str = ""
    key_path: str = CertificatePolicy.key_path
    cert_path: str = CertificatePolicy.cert_path
    chain_path: str = CertificatePolicy.chain_path
    renew_days: float = CertificatePolicy.renew_days
    csr_path: str = CertificatePolicy.csr_path
    ca_sha256: str = CertificatePolicy.ca_sha256
    queued: float = field(default_factory=time.time)
    installed_sha256: str = ""  # the certificate installed last ('' while waiting)
    refused_sha256: str = ""  # the last one refused for good (another key, expired): not tried at every connection
    installed_at: float = 0.0
    not_after: str = ""

    def policy(self) -> CertificatePolicy:
        return replace(CertificatePolicy(), key_path=self.key_path, cert_path=self.cert_path,
                       chain_path=self.chain_path, renew_days=self.renew_days, csr_path=self.csr_path,
                       ca_sha256=self.ca_sha256)


def default_store_path() -> Path:
    return paths.data_dir() / "provisioning" / "pending-certificates.json"


class PendingStore:
    """One JSON file, rewritten atomically on every change; a damaged one reads as empty (and is replaced)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_store_path()

    def _load(self) -> dict[str, PendingCertificate]:
        try:
            doc = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        entries = doc.get("devices") if isinstance(doc, dict) and doc.get("version") == STORE_VERSION else None
        out: dict[str, PendingCertificate] = {}
        for key, raw in (entries or {}).items():
            try:
                out[str(key)] = PendingCertificate(**raw)
            except TypeError:
                continue  # an entry another version wrote: skipped, never a crash
        return out

    def _save(self, entries: Mapping[str, PendingCertificate]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"version": STORE_VERSION, "devices": {k: vars(v) for k, v in sorted(entries.items())}}
        write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True).encode(), mode=0o600)

    @staticmethod
    def key(site: str, device: str) -> str:
        return f"{site}/{device}"

    def get(self, site: str, device: str) -> PendingCertificate | None:
        return self._load().get(self.key(site, device))

    def all(self) -> list[PendingCertificate]:
        return list(self._load().values())

    def put(self, entry: PendingCertificate) -> None:
        entries = self._load()
        old = entries.get(self.key(entry.site, entry.device))
        if old is not None and old.public_key_sha256 == entry.public_key_sha256:
            # The same key: what was installed for it still is.
            entry.installed_sha256, entry.installed_at = old.installed_sha256, old.installed_at
            entry.not_after, entry.refused_sha256 = old.not_after, old.refused_sha256
        entries[self.key(entry.site, entry.device)] = entry
        self._save(entries)

    def mark_installed(self, site: str, device: str, result: CertificateResult) -> None:
        """Remember what became of the certificate: installed, or refused for good (a retry-able refusal is not)."""
        entries = self._load()
        entry = entries.get(self.key(site, device))
        if entry is None or not (result.installed or not result.retry):
            return
        if result.installed:
            entry.installed_sha256, entry.installed_at, entry.not_after = (result.certificate_sha256, time.time(),
                                                                           result.not_after)
        else:
            entry.refused_sha256 = result.certificate_sha256
        self._save(entries)


def record_install(record: Record | None, site: str, device: str, result: CertificateResult, job: str = "") -> None:
    if record is not None:
        record(CERTIFICATE_ACTION, {"site": site, "device": device, "job": job, **result.evidence()},
               "ok" if result.installed else "refused")


async def pickup_on_connect(run: Run, inbound: InboundCache, site: str, device: str, store: PendingStore, *,
                            record: Record | None = None) -> CertificateResult | None:
    """At a connection to ``device``: install the certificate the control plane sent for it, if one is waiting.

    ``inbound`` is the InboundCache. None when the device waits for nothing, nothing came back yet, or what came
    back is already installed; else the result (also recorded as "provision-certificate" when ``record``)."""
    from siteline.core.errors import SitelineError
    from siteline.core.outbox.envelope import default_technician
    from siteline.core.outbox.inbound import certificate_topic

    entry = store.get(site, device)
    if entry is None:
        return None
    try:
        doc = inbound.get_topic(certificate_topic(inbound.technician or default_technician(), site, device))
    except SitelineError:
        return None  # a name that cannot be a topic: nothing can have come back for it
    if doc is None:
        return None
    cert_sha = hashlib.sha256(str(doc.data.get("certificate", "")).encode()).hexdigest()
    if cert_sha in (entry.installed_sha256, entry.refused_sha256):
        return None  # installed already, or refused for good (recorded then)
    result = await install_certificate(run, doc.data, entry.policy(), entry.public_key_sha256)
    store.mark_installed(site, device, result)
    record_install(record, site, device, result, entry.job)
    return result
