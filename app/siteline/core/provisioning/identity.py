"""Wizard step 4: the device's own key pair and a certificate request for the control plane's CA.

The key is made ON the device with its openssl where it has one (umask 077, to a temp name, chmod 600, then
renamed: there is never a half-written or world-readable key at key_path), and never leaves it: the CSR is
made there too and only the CSR (public) is read back. A device without openssl gets a key made on the laptop
with ``cryptography``, IN MEMORY only: it is sent with ``ctx.write_file(secret=True)`` (base64 through printf,
never in the plan or the audit trail) and never written to a file on the laptop, so there is nothing to wipe
from its disk (Python cannot scrub the bytes from memory; they die with the step).
It is never read back either: a later run (a resume, a dry run) checks only that the key is there (test -s) and
reads the CSR beside it (public; key and CSR are renamed into place together, so they belong together).

Idempotent: a key already at key_path is kept, the CSR is made again only when missing or not fitting (another
key, another subject). The CSR is checked here (signature, subject, key) and queued in the outbox ("csr") once
per public key. When a certificate for this key came back already (a re-run after a sync) it is installed now.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from typing import Any

from siteline.core.provisioning.api import StepContext, StepFailedError, StepOutcome, StepRefusedError
from siteline.core.provisioning.certificates import (
    PendingCertificate,
    PendingStore,
    install_certificate,
    public_key_sha256,
    record_install,
)
from siteline.core.provisioning.profile import CertificatePolicy, render

TIMEOUT = 60.0  # an RSA-3072 key on a small ARM board takes seconds
KEYGEN: dict[str, str] = {
    "ec-p256": "-algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve",
    "ec-p384": "-algorithm EC -pkeyopt ec_paramgen_curve:P-384 -pkeyopt ec_param_enc:named_curve",
    "rsa-3072": "-algorithm RSA -pkeyopt rsa_keygen_bits:3072",
    "ed25519": "-algorithm ED25519",
}
# openssl -subj short names -> dotted OIDs (what cryptography's Name holds)
SUBJECT_OIDS: dict[str, str] = {
    "CN": "2.5.4.3", "OU": "2.5.4.11", "O": "2.5.4.10", "L": "2.5.4.7", "ST": "2.5.4.8", "C": "2.5.4.6",
    "serialNumber": "2.5.4.5", "emailAddress": "1.2.840.113549.1.9.1", "DC": "0.9.2342.19200300.100.1.25",
    "UID": "0.9.2342.19200300.100.1.1", "title": "2.5.4.12", "street": "2.5.4.9", "postalCode": "2.5.4.17",
}
pending_store = PendingStore  # the store the step fills (a test may point it elsewhere)
QUEUED_CSR = "identity:csr"  # the runner's note of the CSR's outbox item (job.data["queued"]), saved at once


def subj_escape(value: str) -> str:
    """A value safe inside openssl's -subj form ('/' and '+' separate attributes there)."""
    return re.sub(r"([\\/+=])", r"\\\1", value)


def parse_subject(subject: str) -> list[tuple[str, str]]:
    """[(short name, value)] from '/CN=a/OU=b\\/c'; ValueError for anything else."""
    if not subject.startswith("/"):
        raise ValueError("a subject in -subj form starts with '/'")
    parts: list[str] = []
    current, escaped = "", False
    for char in subject[1:]:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == "/":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    pairs = []
    for part in parts:
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise ValueError(f"{part[:40]!r} is not NAME=value")
        pairs.append((name, value))
    return pairs


def check_csr(csr_pem: str, subject: list[tuple[str, str]], public_sha256: str) -> str:
    """'' when the CSR is signed by its key, names ``subject`` and carries the device's key; else what is wrong."""
    from cryptography import x509

    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        return "it is not a PEM certificate request"
    if not csr.is_signature_valid:
        return "its signature does not verify"
    if public_key_sha256(csr_pem) != public_sha256:
        return "it is for another key than the device's"
    got = [(a.oid.dotted_string, a.value) for a in csr.subject]
    want = [(SUBJECT_OIDS.get(name, name), value) for name, value in subject]
    if got != want:
        return f"its subject is {csr.subject.rfc4514_string()[:120]}"
    return ""


def _values(ctx: StepContext) -> dict[str, str]:
    return {"device": ctx.job.device, "site": ctx.job.site, "serial": str(ctx.job.facts.get("serial", ""))}


async def identity_step(ctx: StepContext) -> StepOutcome:
    policy = ctx.profile.certificate
    if not ctx.job.device:
        raise StepFailedError("The device has no name yet, so its certificate request cannot name it.",
                              "Run the provisioning from the start: the identify step names the device.")
    try:
        rendered = parse_subject(render(policy.subject, {k: subj_escape(v) for k, v in _values(ctx).items()}))
    except ValueError as exc:
        raise StepFailedError(f"The certificate subject {policy.subject!r} is unusable: {exc}.",
                              "Fix certificate.subject in the profile (openssl -subj form).") from None
    wanted = [(name, value) for name, value in rendered if value]  # openssl leaves out an empty one: so do we
    subject = "/" + "/".join(f"{name}={subj_escape(value)}" for name, value in wanted)
    on_device = bool((await ctx.read("command -v openssl", TIMEOUT)).stdout.strip())
    if on_device:
        public_sha, csr_pem, made = await _on_device(ctx, policy, subject, wanted)
    else:
        public_sha, csr_pem, made = await _on_laptop(ctx, policy, wanted)
    if ctx.dry_run and not public_sha:
        return StepOutcome(f"would make the device key and a CSR for {subject} on the {_where(on_device)}",
                           {"where": _where(on_device), "made": made})
    problem = check_csr(csr_pem, wanted, public_sha) if csr_pem else "it is missing"
    if problem and not ctx.dry_run:
        raise StepFailedError(f"The certificate request at {policy.csr_path} cannot be sent: {problem}.",
                              "Check the device's openssl and storage, then run the provisioning again.")
    data = _data(ctx)
    _queue(ctx, policy, subject, csr_pem, public_sha, _where(on_device))
    detail = f"device key ({policy.key_type}, made on the {_where(on_device)}); CSR for {subject} queued"
    installed = await _install_if_back(ctx, policy, public_sha)
    if installed:
        data["certificate"] = installed
        detail += f"; certificate {installed['detail']}"
    evidence = {k: data[k] for k in ("where", "key_path", "public_key_sha256", "csr_sha256", "csr_item")}
    return StepOutcome(detail, {**evidence, "made": made, "subject": subject, "key_type": policy.key_type,
                                "certificate": installed or None}, skipped=not made and not installed)


def _where(on_device: bool) -> str:
    return "device" if on_device else "laptop"


def _data(ctx: StepContext) -> dict[str, Any]:
    data = ctx.job.data.get("identity")
    if not isinstance(data, dict):
        data = {}
        ctx.job.data["identity"] = data
    return data


async def _on_device(ctx: StepContext, policy: CertificatePolicy, subject: str,
                     wanted: list[tuple[str, str]]) -> tuple[str, str, list[str]]:
    """(public key hash, CSR PEM, what was made) with the device's openssl; the private key never leaves it."""
    q = shlex.quote
    key, csr = q(policy.key_path), q(policy.csr_path)
    made: list[str] = []
    mode = (await ctx.read(f"stat -c %a {key} 2>/dev/null", TIMEOUT)).stdout.strip()
    if not mode:
        directory = q(policy.key_path.rsplit("/", 1)[0] or "/")
        tmp = q(policy.key_path + ".siteline-tmp")
        result = await ctx.change(f"mkdir -p {directory} && umask 077 && openssl genpkey {KEYGEN[policy.key_type]} "
                                  f"-out {tmp} && chmod 600 {tmp} && mv -f {tmp} {key} && sync",
                                  what=f"make the device's {policy.key_type} key on the device", timeout=TIMEOUT)
        _ok(result, f"make its key at {policy.key_path}")
        made.append("key")
    elif mode[-2:] != "00":
        _ok(await ctx.change(f"chmod 600 {key}", what="make the device key readable by root only", timeout=TIMEOUT),
            f"chmod its key at {policy.key_path}")
        made.append("key-mode")
    if ctx.dry_run and "key" in made:
        await _make_csr(ctx, policy, subject)  # only planned: there is no key to read yet
        return "", "", [*made, "csr"]
    public = await ctx.read(f"openssl pkey -pubout -in {key}", TIMEOUT)
    _ok(public, f"read the public half of its key at {policy.key_path}")
    try:
        public_sha = public_key_sha256(public.stdout)
    except ValueError:
        raise StepFailedError(f"The device's openssl gave no public key for its key at {policy.key_path}.",
                              "Check the key file on the device (remove it to have a new one made).") from None
    current = (await ctx.read(f"cat {csr} 2>/dev/null", TIMEOUT)).stdout
    if current.strip() and not check_csr(current, wanted, public_sha):
        return public_sha, current, made
    await _make_csr(ctx, policy, subject)
    made.append("csr")
    return public_sha, (await ctx.read(f"cat {csr} 2>/dev/null", TIMEOUT)).stdout, made


async def _make_csr(ctx: StepContext, policy: CertificatePolicy, subject: str) -> None:
    q = shlex.quote
    key, csr, tmp = q(policy.key_path), q(policy.csr_path), q(policy.csr_path + ".siteline-tmp")
    result = await ctx.change(f"umask 022 && openssl req -new -key {key} -subj {q(subject)} -out {tmp} && "
                              f"mv -f {tmp} {csr} && sync", what=f"make the certificate request for {subject}",
                              timeout=TIMEOUT)
    _ok(result, f"make its certificate request at {policy.csr_path}")


async def _on_laptop(ctx: StepContext, policy: CertificatePolicy,
                     wanted: list[tuple[str, str]]) -> tuple[str, str, list[str]]:
    """The same without openssl on the device: key and CSR made in this process's memory, never in a file here.

    The private key is never read back: a key already there is known by the CSR beside it (public; key and CSR
    are renamed into place in one command, so they belong together). A key without a fitting CSR cannot get one
    without its private half: it is replaced (its public half is known nowhere, so no certificate can be checked
    against it anyway)."""
    q = shlex.quote
    exists = (await ctx.read(f"test -s {q(policy.key_path)}", TIMEOUT)).ok
    current = (await ctx.read(f"cat {q(policy.csr_path)} 2>/dev/null", TIMEOUT)).stdout if exists else ""
    if current.strip():
        try:
            public_sha = public_key_sha256(current)
        except ValueError:
            public_sha = ""
        if public_sha and not check_csr(current, wanted, public_sha):
            return public_sha, current, []
    return await _new_laptop_key(ctx, policy, wanted, exists)


async def _new_laptop_key(ctx: StepContext, policy: CertificatePolicy, wanted: list[tuple[str, str]],
                          replacing: bool) -> tuple[str, str, list[str]]:
    """A new key and its CSR, both written beside their places first and renamed together (a cut leaves the old
    pair or the new one, never a key with another key's CSR)."""
    from cryptography.hazmat.primitives import serialization

    q = shlex.quote
    key = new_key(policy.key_type)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    new_key_path, new_csr_path = policy.key_path + ".siteline-new", policy.csr_path + ".siteline-new"
    await ctx.write_file(new_key_path, pem, mode=0o600, secret=True,
                         what=f"put the device's new {policy.key_type} key (made on the laptop, in memory only)")
    del pem
    public_sha = public_key_sha256(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    csr_pem = make_csr(key, wanted)
    del key
    await ctx.write_file(new_csr_path, csr_pem.encode(), mode=0o644, what="put the certificate request")
    what = "replace the device's key (no certificate request beside it tells its public half) and its CSR" \
        if replacing else "move the new key and its certificate request into place"
    moved = await ctx.change(f"mv -f {q(new_key_path)} {q(policy.key_path)} && mv -f {q(new_csr_path)} "
                             f"{q(policy.csr_path)} && sync", what=what, timeout=TIMEOUT)
    _ok(moved, f"move its key to {policy.key_path}")
    return public_sha, csr_pem, ["key-replaced" if replacing else "key", "csr"]


def new_key(key_type: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key: Any, wanted: list[tuple[str, str]]) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    name = x509.Name([x509.NameAttribute(x509.ObjectIdentifier(SUBJECT_OIDS.get(k, k)), v) for k, v in wanted])
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, digest)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _queue(ctx: StepContext, policy: CertificatePolicy, subject: str, csr_pem: str, public_sha: str,
           where: str) -> str:
    """The outbox item carrying this key's CSR: the one queued before for the same key, else a new one.

    The key's hashes go into job.data BEFORE the outbox is asked: the runner saves the job the moment an item is
    queued (job.data["queued"]), so a Siteline killed right after finds the item and the key it was for."""
    data, site, device = _data(ctx), ctx.job.site, ctx.job.device
    store = pending_store()
    entry = store.get(site, device)
    same_key = data.get("public_key_sha256") == public_sha
    item = str(data.get("csr_item") or "") if same_key else ""
    queued = ctx.job.data.get("queued")
    if not item and same_key and isinstance(queued, dict) and queued.get(QUEUED_CSR):
        item = str(queued[QUEUED_CSR])  # queued just before Siteline was stopped
    if not item and entry is not None and entry.public_key_sha256 == public_sha:
        item = entry.csr_item
    csr_sha = hashlib.sha256(csr_pem.encode()).hexdigest()
    data.update({"where": where, "key_path": policy.key_path, "public_key_sha256": public_sha, "csr_sha256": csr_sha,
                 "csr_item": item})
    if not item:
        if ctx.outbox_put is None:
            raise StepRefusedError("There is no outbox to queue the certificate request in.",
                                   "Check Siteline's data folder is writable, then run the provisioning again.")
        if isinstance(queued, dict):
            queued.pop(QUEUED_CSR, None)  # an item for an earlier key: not this one's
        item = ctx.outbox_put("csr", {"site": site, "device": device, "csr": csr_pem, "subject": subject,
                                      "key_type": policy.key_type, "public_key_sha256": public_sha,
                                      "job": ctx.job.id})
        data["csr_item"] = item
    if not ctx.dry_run:
        store.put(PendingCertificate(site, device, public_sha, csr_sha, item, ctx.job.id, policy.key_path,
                                     policy.cert_path, policy.chain_path, policy.renew_days, csr_path=policy.csr_path,
                                     ca_sha256=policy.ca_sha256))
    return item


async def _install_if_back(ctx: StepContext, policy: CertificatePolicy, public_sha: str) -> dict[str, Any] | None:
    """Install a certificate that already came back for this key (a run after a sync); None when there is none."""
    doc = ctx.inbound_certificate()
    if not doc or not isinstance(doc.get("certificate"), str):
        return None
    try:
        if public_key_sha256(doc["certificate"]) != public_sha:
            return None  # for an older key: the new CSR's answer is still to come
    except ValueError:
        return None
    store = pending_store()
    entry = store.get(ctx.job.site, ctx.job.device)
    if entry is not None and entry.installed_sha256 == hashlib.sha256(doc["certificate"].encode()).hexdigest():
        return {"installed": True, "detail": "already installed", "not_after": entry.not_after}

    async def change(command: str, timeout: float) -> Any:
        return await ctx.change(command, what="install the device certificate", timeout=timeout)

    result = await install_certificate(ctx.read, doc, policy, public_sha, change=change, dry_run=ctx.dry_run)
    if not ctx.dry_run:
        store.mark_installed(ctx.job.site, ctx.job.device, result)
        record_install(ctx.record, ctx.job.site, ctx.job.device, result, ctx.job.id)
    return result.evidence()


def _ok(result: Any, doing: str) -> None:
    if not result.ok:
        why = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit status {result.exit_code}"]
        raise StepFailedError(f"The device could not {doing}: {why[0][:200]}",
                              "Check the device's openssl and that its storage is writable, then run the "
                              "provisioning again.")
