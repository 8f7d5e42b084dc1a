"""The Modem snapshots: which modem, is it registered, and how good the signal is.

Unknown values are ``None``, never 0: a modem that does not report RSRP must not look like one at
0 dBm. ``problems`` says in words what could not be read; ``raw`` keeps the tool's output so the UI
can show it one click away.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModemRef:
    """One line of ``mmcli -L``: the D-Bus path, the index for ``mmcli -m N``, and who made it."""

    path: str
    index: int | None
    manufacturer: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class ModemList:
    modems: tuple[ModemRef, ...]
    problems: tuple[str, ...] = ()
    raw: str = ""


@dataclass(frozen=True)
class Modem:
    """``mmcli -m N`` (any output form) or the AT-command equivalent, reduced to what a technician asks."""

    path: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None  # mmcli "firmware revision" (modem.generic.revision)
    state: str | None = None  # ModemManager's words: connected, registered, searching, locked, failed ...
    failed_reason: str | None = None  # sim-missing, sim-error, unknown-capabilities, esim-without-profiles ...
    power_state: str | None = None
    access_technologies: tuple[str, ...] = ()  # lte, 5gnr, umts, hsdpa, gsm ...; empty when unknown
    operator_name: str | None = None
    operator_code: str | None = None  # MCC+MNC, e.g. "23415"
    registration: str | None = None  # home, roaming, searching, denied, idle, unknown ...
    roaming: bool | None = None  # None while not registered or unknown
    sim_present: bool | None = None
    sim_locked: bool | None = None  # True when a PIN/PUK blocks the modem
    unlock_required: str | None = None  # as mmcli names it: sim-pin, sim-puk, none ...
    imei: str | None = None  # the UI masks it unless revealed
    signal_quality: int | None = None  # ModemManager's 0-100 %
    signal_recent: bool | None = None  # False: the quality is a stale cached value
    problems: tuple[str, ...] = ()
    raw: str = ""

    def masked_imei(self) -> str | None:
        """The IMEI with its serial part hidden: the first 8 digits (the type allocation code) name the model."""
        if self.imei is None:
            return None
        return self.imei[:8] + "*" * max(0, len(self.imei) - 8)


def rsrp_band(rsrp: float | None) -> str | None:
    """The quality band of an LTE/NR RSRP in dBm: excellent >= -80, good -80..-90, fair -90..-100, poor < -100."""
    if rsrp is None:
        return None
    if rsrp >= -80:
        return "excellent"
    if rsrp >= -90:
        return "good"
    return "fair" if rsrp >= -100 else "poor"


@dataclass(frozen=True)
class SignalReading:
    """One technology's figures. dBm for rssi/rsrp/rscp, dB for rsrq/snr/ecio; None when unknown."""

    rssi: float | None = None
    rsrp: float | None = None
    rsrq: float | None = None
    snr: float | None = None
    rscp: float | None = None  # UMTS
    ecio: float | None = None  # UMTS Ec/Io
    error_rate: float | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in (self.rssi, self.rsrp, self.rsrq, self.snr, self.rscp, self.ecio,
                                       self.error_rate))


@dataclass(frozen=True)
class ModemSignal:
    """``mmcli -m N --signal-get`` (or AT+CESQ/AT+CSQ): one reading per technology the modem reported.

    A technology is None when nothing was reported for it. ``nr`` is what mmcli calls "5g" (5G NR).
    ``refresh_rate`` is 0 (or None) when ``--signal-setup`` was never run: then every value is unknown.
    """

    refresh_rate: int | None = None
    rssi: float | None = None  # AT+CSQ: the serving cell's RSSI in dBm when its technology is not known
    gsm: SignalReading | None = None
    umts: SignalReading | None = None
    lte: SignalReading | None = None
    nr: SignalReading | None = None
    problems: tuple[str, ...] = ()
    raw: str = ""

    def technologies(self) -> dict[str, SignalReading]:
        """The technologies with figures, by the name the CLI JSON uses (gsm, umts, lte, nr)."""
        found = {"gsm": self.gsm, "umts": self.umts, "lte": self.lte, "nr": self.nr}
        return {name: reading for name, reading in found.items() if reading is not None}
