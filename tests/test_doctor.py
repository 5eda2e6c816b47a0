"""`make run`'s check of the system libraries Qt's window plugin needs, and `ssl-studio doctor`."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from studio.services import doctor

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="ldd and apt-get are Linux tools")


def _script(path, body: str):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def fake_machine(tmp_path, monkeypatch):
    """A fake xcb plugin, an `ldd` that says two libraries are missing until a fake `apt-get`
    has 'installed' them (it writes a marker), both on PATH; nothing real is installed."""
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"\x7fELF fake")
    marker = tmp_path / "installed"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "ldd", f"""echo "	libxcb.so.1 => /usr/lib/libxcb.so.1 (0x0001)"
if [ ! -e {marker} ]; then
  echo "	libxcb-icccm.so.4 => not found"
  echo "	libxcb-keysyms.so.1 => not found"
  echo "	libxcb-icccm.so.4 => not found"
fi
""")
    _script(bin_dir / "apt-get", f"""echo "$@" >> {tmp_path / 'apt.log'}
[ "$1" = install ] && touch {marker}
exit 0
""")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr(doctor, "xcb_plugin", lambda: plugin)
    monkeypatch.setattr(sys, "platform", "linux")
    return tmp_path


def test_a_missing_library_is_named_with_the_command_that_installs_it(fake_machine, monkeypatch, capsys):
    gui = doctor.check_gui_libraries()
    assert gui.missing == ("libxcb-icccm.so.4", "libxcb-keysyms.so.1")  # each once, in ldd's order
    message = gui.message()
    assert "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1" in message
    assert "dnf install -y xcb-util-wm xcb-util-keysyms" in message and "pacman -S xcb-util-wm" in message
    # Where nothing may be installed without a password, `make run` stops with that one line.
    monkeypatch.setattr(doctor, "can_install_packages", lambda: None)
    assert doctor.main(["--gui-libraries", "--install"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Qt cannot open a window") and "libxcb-keysyms1" in err[0]
    assert not (fake_machine / "apt.log").exists()


def test_run_installs_the_missing_packages_where_it_may(fake_machine, monkeypatch):
    monkeypatch.setattr(doctor, "can_install_packages", lambda: [])  # as root
    assert doctor.main(["--gui-libraries", "--install"]) == 0
    assert (fake_machine / "apt.log").read_text().split() == [
        "install", "-y", "--no-install-recommends", "libxcb-icccm4", "libxcb-keysyms1"]
    assert doctor.check_gui_libraries().ok


def test_another_qt_platform_needs_no_xcb_libraries(fake_machine, monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert doctor.check_gui_libraries().ok
    assert not doctor.check_gui_libraries(platform="xcb").ok


def test_doctor_command_reports_device_versions_disk_and_window_libraries(fake_machine, tmp_path, capsys):
    from studio.cli import main

    assert main(["doctor", str(tmp_path), "--json"]) == 1  # the fake plugin lacks two libraries
    report = json.loads(capsys.readouterr().out)
    checks = {c["check"]: c for c in report["checks"]}
    assert set(checks) >= {"torch", "training device", "window libraries", "free disk"}
    assert not report["ok"] and not checks["window libraries"]["ok"]
    assert "libxcb-icccm4" in checks["window libraries"]["result"]
    assert checks["training device"]["result"] and "GiB" in checks["free disk"]["result"]
