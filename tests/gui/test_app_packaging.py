"""What an install needs: resources in the wheel, the icon at every size, the freedesktop files,
the --self-test option and the per-page screenshots."""

from __future__ import annotations

import configparser
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_ID = "io.github.sslstudio.SSLStudio"


def test_the_wheel_carries_every_resource():
    """setuptools' package-data globs (what the wheel takes) cover every file under studio/resources."""
    import tomllib

    from setuptools.discovery import FlatLayoutPackageFinder  # noqa: F401 - setuptools is the build backend

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = cfg["tool"]["setuptools"]["package-data"]["studio"]
    package = ROOT / "studio"
    covered = {p for g in globs for p in package.glob(g) if p.is_file()}
    shipped = {p for p in (package / "resources").rglob("*") if p.is_file()}
    assert shipped and shipped <= covered
    names = {p.name for p in shipped}
    assert {"style.qss", "ssl-studio.svg", "ssl-studio-16.png", "ssl-studio-256.png"} <= names


def test_the_icon_exists_at_every_size(qtbot):
    from PySide6.QtGui import QImage

    from studio.gui.style import ICON_SIZES, app_icon

    for n in ICON_SIZES:
        img = QImage(str(ROOT / "studio" / "resources" / "icons" / f"ssl-studio-{n}.png"))
        assert (img.width(), img.height()) == (n, n)
    icon = app_icon()
    assert sorted(s.width() for s in icon.availableSizes()) == sorted(ICON_SIZES)


def test_desktop_file_and_metainfo_agree():
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.optionxform = str
    desktop.read(ROOT / "packaging" / f"{APP_ID}.desktop")
    entry = desktop["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Icon"] == APP_ID
    assert entry["Exec"].split()[0] == "ssl-studio-gui"
    meta = ET.parse(ROOT / "packaging" / f"{APP_ID}.metainfo.xml").getroot()
    assert meta.findtext("id") == APP_ID
    assert meta.find("launchable").text == f"{APP_ID}.desktop"
    assert {b.text for b in meta.find("provides")} == {"ssl-studio", "ssl-studio-gui"}
    spec = (ROOT / "packaging" / "ssl-studio.spec").read_text()
    assert "COLLECT(" in spec and "studio/resources" in spec  # one folder, with the resources


def test_self_test_is_an_option_of_the_command(monkeypatch, capsys):
    import studio.selftest
    from studio.cli import build_parser, main

    assert build_parser().parse_args(["--self-test"]).self_test
    monkeypatch.setattr(studio.selftest, "self_test", lambda: print("OK stub") or 0)
    assert main(["--self-test"]) == 0
    assert "OK stub" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["welcome", "dataset", "new-run", "run", "run-details", "explorer", "compare"])
def test_every_page_can_be_named_for_a_screenshot(qtbot, name, tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings

    import studio.gui.main_window as mw
    from studio.gui.app import show_named_page

    ini = str(tmp_path / "settings.ini")
    monkeypatch.setattr(mw, "settings", lambda: QSettings(ini, QSettings.Format.IniFormat))
    w = mw.MainWindow()
    qtbot.addWidget(w)
    show_named_page(w, name)
    if name == "welcome":
        assert w.stack.currentWidget() is w.welcome
    else:
        assert w.current_page_title().lower().replace(" ", "-") == name
    with pytest.raises(ValueError):
        show_named_page(w, "nowhere")
