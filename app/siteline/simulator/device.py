"""One simulated device: its servers, its clock, and its reboots.

``reboot`` (a shim run by any shell on the device) leaves a request in the state dir; the device
notices it within ~50 ms, drops every way in (SSH stops listening, MQTT goes offline, the console
prints its shutdown), stays dark for ``boot_delay``, runs boot selection (each failed attempt costs
time too) and comes back on the same port, link and broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from siteline.simulator import hostguard, shell
from siteline.simulator.boot import BootOutcome
from siteline.simulator.mqtt_agent import MqttAgent
from siteline.simulator.serial_console import SerialConsole
from siteline.simulator.slots import booted_healthy
from siteline.simulator.ssh_server import SSHDeviceServer
from siteline.simulator.state import DeviceState
from siteline.simulator.tools import firewall, systemd_run
from siteline.simulator.tools.systemctl import MARK_GOOD_UNIT, log_boot_health, unit_enabled

log = logging.getLogger(__name__)
REBOOT_POLL = 0.05
TICK_INTERVAL = 1.0
SESSION_GRACE = 1.0  # on reboot, running commands (`reboot` itself) get this long to finish
TIMER_POLL = 0.1  # how often due transient timers (systemd-run --on-active) are looked for
TIMER_COMMAND_LIMIT = 600.0  # a timer's service that runs longer is stopped, as a TimeoutSec would


class SimulatedDevice:
    def __init__(self, state: DeviceState, ssh_port: int | None = None, serial_link: Path | str | None = None,
                 mqtt_url: str | None = None, *, ssh_password_login: bool = True) -> None:
        self.state = state
        self.ssh = (SSHDeviceServer(state, ssh_port, password_login=ssh_password_login)
                    if ssh_port is not None else None)
        self.console = SerialConsole(state, Path(serial_link)) if serial_link is not None else None
        self.mqtt = MqttAgent(state, mqtt_url) if mqtt_url is not None else None
        self.up = asyncio.Event()
        self.last_boot: BootOutcome | None = None
        self.boots = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._marking: asyncio.Task[None] | None = None  # rauc-mark-good.service of the current boot
        self._services: set[asyncio.Task[None]] = set()  # services started by transient timers, still running
        self.powered_off = False

    @property
    def ssh_port(self) -> int | None:
        return self.ssh.port if self.ssh is not None else None

    def urls(self) -> dict[str, str | None]:
        """How to reach the device, as target URLs (None for a way in that is not served)."""
        user = self.state.config.user
        return {
            "ssh": f"ssh://{user}@127.0.0.1:{self.ssh.port}" if self.ssh is not None else None,
            "serial": self.console.url if self.console is not None else None,
            "mqtt": self.mqtt.url if self.mqtt is not None else None,
            "state": str(self.state.root),
        }

    async def start(self) -> None:
        """Power on: a power-on is a boot (new boot id, boot selection runs its counters), then serve.

        Raises ``hostguard.HostGuardError`` first when the device's commands could not be kept off the host.
        """
        await asyncio.to_thread(hostguard.check)
        self.state.take_power_request()  # a request left by a power cut mid-reboot: the box is booting now
        self._booted(self.state.boot())
        if self.console is not None:
            await self.console.start()
        await self._bring_up()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch_reboot(), name="reboot watch"),
                       loop.create_task(self._tick(), name="device clock"),
                       loop.create_task(self._timers(), name="transient timers")]

    async def stop(self) -> None:
        for task in [*self._tasks, *([self._marking] if self._marking else [])]:
            task.cancel()
        for service in self._services:
            service.cancel()
        await asyncio.gather(*self._tasks, *([self._marking] if self._marking else []), *self._services,
                             return_exceptions=True)
        self._tasks = []
        self._services.clear()
        self._marking = None
        await self._bring_down()
        if self.console is not None:
            await self.console.stop()

    async def _bring_up(self) -> None:
        if self.ssh is not None:
            await self.ssh.start()
        if self.mqtt is not None:
            await self.mqtt.start()
        self.up.set()

    async def _bring_down(self, grace: float = 0.0) -> None:
        self.up.clear()
        if self.ssh is not None:
            await self.ssh.stop(grace)
        if self.mqtt is not None:
            await self.mqtt.stop(graceful=True, grace=grace)

    async def reboot(self) -> BootOutcome:
        """Shut down, stay dark, boot (burning attempts on images that fail), come back."""
        log.info("%s: rebooting", self.state.config.name)
        await self._bring_down(grace=SESSION_GRACE)
        if self.console is not None:
            await self.console.shutdown()
        await asyncio.sleep(float(self.state.config.boot_delay))
        outcome = self.state.boot()
        failed = max(0, len(outcome.attempts) - 1)
        # A slot that panics costs a kernel start and a watchdog reset each time.
        await asyncio.sleep(failed * float(self.state.config.boot_delay) / 2)
        self.boots += 1
        self._booted(outcome, rules_lost=True)
        log.info("%s: booted slot %s after %s%s", self.state.config.name, outcome.slot, outcome.attempts,
                 " (rolled back)" if outcome.rolled_back else "")
        if self.console is not None:
            self.console.booted(outcome)
        await self._bring_up()
        return outcome

    def _booted(self, outcome: BootOutcome, *, rules_lost: bool = False) -> None:
        """A boot came up: once it has run a while, rauc-mark-good.service (when enabled) marks it good."""
        self.last_boot = outcome
        for service in self._services:  # the processes of the boot before are gone
            service.cancel()
        try:
            systemd_run.clear(self.state.root)  # transient timers do not survive a reboot
            firewall.at_boot(self.state, lost=rules_lost)  # nor live firewall rules: the persisted ones load
        except (OSError, ValueError) as exc:
            log.warning("%s: could not drop the transient timers / load the firewall: %s", self.state.config.name, exc)
        try:
            log_boot_health(self.state)  # a healthy=false image: its agent's crash lands in the journal
        except (OSError, ValueError) as exc:
            log.warning("%s: could not journal the boot's service health: %s", self.state.config.name, exc)
        if self._marking is not None:
            self._marking.cancel()
        boot_id = str(self.state.device().get("boot_id", ""))
        self._marking = asyncio.get_running_loop().create_task(self._mark_good(boot_id), name="rauc-mark-good")

    async def _mark_good(self, boot_id: str) -> None:
        await asyncio.sleep(float(self.state.config.mark_good_delay))
        try:
            if not unit_enabled(self.state, MARK_GOOD_UNIT):
                return
            if not booted_healthy(self.state.root, self.state.booted_slot()):
                # As on a real image: rauc-mark-good.service needs boot-complete.target, which a failed
                # unit (edge-agent on a healthy=false image) keeps from being reached.
                self.state.log("Dependency failed for Rauc Good-marking Service (boot-complete.target not "
                               "reached: edge-agent.service failed).", "systemd", priority=4)
            else:
                self.state.mark_booted_good(boot_id)
        except (OSError, ValueError) as exc:  # a damaged state dir: the slot stays unmarked, as on hardware
            log.warning("%s: rauc-mark-good failed: %s", self.state.config.name, exc)

    async def power_off(self) -> None:
        """Halt: every way in goes dark and stays dark until the device is started again (power on)."""
        log.info("%s: powering off", self.state.config.name)
        if self._marking is not None:
            self._marking.cancel()
        await self._bring_down(grace=SESSION_GRACE)
        if self.console is not None:
            await self.console.shutdown()
        self.powered_off = True

    async def _watch_reboot(self) -> None:
        while True:
            await asyncio.sleep(REBOOT_POLL)
            try:
                wanted = self.state.take_power_request()
            except (OSError, ValueError) as exc:
                log.warning("reboot request unreadable: %s", exc)
                continue
            if not wanted:
                continue
            if wanted == "poweroff":
                await self.power_off()
                return
            try:
                await self.reboot()
            except Exception:  # a broken state dir must not leave the device dark for good
                log.exception("%s: the reboot went wrong; bringing the servers back anyway", self.state.config.name)
                if self.console is not None and not self.console.running:
                    self.console.booted(BootOutcome(slot="?", console_lines=["U-Boot: boot failed, resetting"]))
                await self._bring_up()

    async def _timers(self) -> None:
        """Fire due transient timers: each runs its command as a device command (its transient service)."""
        while True:
            await asyncio.sleep(TIMER_POLL)
            if not self.up.is_set():
                continue
            try:
                due = systemd_run.take_due(self.state.root, time.time())
            except (OSError, ValueError) as exc:
                log.warning("%s: transient timers unreadable: %s", self.state.config.name, exc)
                continue
            for timer in due:
                task = asyncio.get_running_loop().create_task(self._run_service(timer), name=str(timer["unit"]))
                self._services.add(task)
                task.add_done_callback(self._services.discard)

    async def _run_service(self, timer: dict[str, object]) -> None:
        service = str(timer.get("service", timer["unit"]))
        self.state.log(f"Started {timer.get('description') or service}.", "systemd")
        try:
            code, _out, err = await shell.run_command(self.state, str(timer["command"]), timeout=TIMER_COMMAND_LIMIT)
        except (OSError, RuntimeError) as exc:
            log.warning("%s: %s could not start: %s", self.state.config.name, service, exc)
            return
        if code:
            self.state.log(f"{service}: Main process exited, code=exited, status={code}/FAILURE "
                           f"{err.decode(errors='replace').strip()[-200:]}", "systemd", priority=4)
        self.state.log(f"{service}: Deactivated successfully." if not code else
                       f"{service}: Failed with result 'exit-code'.", "systemd")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(min(TICK_INTERVAL, max(0.05, float(self.state.config.telemetry_interval))))
            if not self.up.is_set():
                continue
            with contextlib.suppress(OSError, ValueError):
                self.state.tick()
