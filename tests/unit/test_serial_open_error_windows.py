"""What a technician reads when a COM port cannot be opened on Windows (pyserial gives no errno there)."""

from __future__ import annotations

import serial

from siteline.core.transports.serial_options import open_error


def test_missing_com_port_says_it_does_not_exist() -> None:
    exc = serial.SerialException(
        "could not open port 'COM7': FileNotFoundError(2, 'The system cannot find the file specified.', None, 2)")
    err = open_error(exc, "COM7")
    assert "does not exist" in str(err)


def test_access_denied_on_windows_means_another_program_has_the_port() -> None:
    exc = serial.SerialException("could not open port 'COM3': PermissionError(13, 'Access is denied.', None, 5)")
    err = open_error(exc, "COM3")
    assert "busy" in str(err)
    assert "dialout" not in str(err) + (err.hint or "")


def test_linux_permission_still_points_at_dialout() -> None:
    exc = PermissionError(13, "Permission denied: '/dev/ttyUSB0'")
    err = open_error(exc, "/dev/ttyUSB0")
    assert "dialout" in (err.hint or "")
