"""Can this machine run the studio? The system libraries Qt's window plugin needs, the training
device, the versions, the free disk space. Used by `make run` (before the window opens),
`ssl-studio doctor` and `--self-test`. Imports no Qt: it must work where Qt cannot start.

Run as `python -m studio.services.doctor --gui-libraries [--install]`: exit 0 when the window can
open (or Qt is told to use another platform), else one line naming the install command, exit 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The shared libraries Qt 6's xcb plugin loads that a minimal Debian/Ubuntu lacks, by soname:
# (Debian/Ubuntu package, Fedora package, Arch package).
SYSTEM_PACKAGES: dict[str, tuple[str, str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb", "libxcb"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "libX11.so.6": ("libx11-6", "libX11", "libx11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "libSM.so.6": ("libsm6", "libSM", "libsm"),
    "libICE.so.6": ("libice6", "libICE", "libice"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2"),
}


@dataclass(frozen=True)
class GuiLibraries:
    """What Qt's window plugin lacks on this machine; `ok` when nothing (or not applicable)."""

    plugin: str | None
    missing: tuple[str, ...] = ()
    note: str = ""  # why the check did not apply, if it did not

    @property
    def ok(self) -> bool:
        return not self.missing

    def packages(self, family: int = 0) -> list[str]:
        """The packages that bring the missing libraries (0 Debian/Ubuntu, 1 Fedora, 2 Arch)."""
        names = []
        for lib in self.missing:
            name = SYSTEM_PACKAGES.get(lib, (None,) * 3)[family]
            if name and name not in names:
                names.append(name)
        return names

    def unknown(self) -> list[str]:
        return [lib for lib in self.missing if lib not in SYSTEM_PACKAGES]

    def message(self) -> str:
        """One line: what is missing and the exact command that installs it."""
        if self.ok:
            return f"Qt's window plugin has its system libraries ({self.note or self.plugin})"
        line = (f"Qt cannot open a window: its xcb plugin needs {', '.join(self.missing)}. "
                f"Install them with: sudo apt-get install -y {' '.join(self.packages(0))}")
        if self.packages(1):
            line += f" (Fedora: sudo dnf install -y {' '.join(self.packages(1))}; " \
                    f"Arch: sudo pacman -S {' '.join(self.packages(2))})"
        if self.unknown():
            line += f"; find the package for {', '.join(self.unknown())} with your package manager"
        return line


def xcb_plugin() -> Path | None:
    """The xcb platform plugin of the installed PySide6 (found without importing Qt)."""
    import importlib.util

    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for candidate in (Path(root) / "Qt" / "plugins" / "platforms" / "libqxcb.so",
                          Path(root) / "plugins" / "platforms" / "libqxcb.so"):
            if candidate.exists():
                return candidate
    return None


def missing_libraries(plugin: str | Path, ldd: str = "ldd") -> tuple[str, ...]:
    """The sonames `ldd` reports as 'not found' for `plugin`, each once, in its order."""
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    missing: list[str] = []
    for line in out.splitlines():
        name, _, rest = line.strip().partition("=>")
        if "not found" in rest and name.strip() not in missing:
            missing.append(name.strip())
    return tuple(missing)


def check_gui_libraries(plugin: str | Path | None = None, ldd: str = "ldd",
                        platform: str | None = None) -> GuiLibraries:
    """Whether Qt's xcb plugin can load here (Linux with an X display; elsewhere it applies not)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "") if platform is None else platform
    if platform and not platform.startswith("xcb"):
        return GuiLibraries(None, note=f"Qt is told to use the {platform!r} platform")
    if plugin is None:
        if not sys.platform.startswith("linux"):
            return GuiLibraries(None, note=f"not needed on {sys.platform}")
        plugin = xcb_plugin()
        if plugin is None:
            return GuiLibraries(None, note="PySide6 has no xcb plugin here")
    if shutil.which(ldd) is None and not Path(ldd).exists():
        return GuiLibraries(str(plugin), note="ldd is not available to check")
    return GuiLibraries(str(plugin), missing_libraries(plugin, ldd))


def can_install_packages() -> list[str] | None:
    """The command prefix that may install Debian packages here without asking (root, or sudo
    without a password), or None."""
    if shutil.which("apt-get") is None:
        return None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return []
    if shutil.which("sudo") is not None:
        if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
            return ["sudo", "-n"]
    return None


def install_packages(packages: list[str], prefix: list[str]) -> bool:
    """apt-get install the packages (with one `apt-get update` if the first try fails)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env).returncode == 0:
        return True
    subprocess.run([*prefix, "apt-get", "update"], env=env)
    return subprocess.run(install, env=env).returncode == 0


@dataclass
class Report:
    """`ssl-studio doctor`: one line per fact, and whether anything blocks the studio."""

    lines: list[tuple[str, str, bool]] = field(default_factory=list)  # (what, value, ok)

    def add(self, what: str, value: str, ok: bool = True) -> None:
        self.lines.append((what, value, ok))

    @property
    def ok(self) -> bool:
        return all(ok for _, _, ok in self.lines)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [{"check": w, "result": v, "ok": ok} for w, v, ok in self.lines]}


def doctor(data_dir: str | Path | None = None) -> Report:
    """Everything the studio needs from this machine, checked without starting Qt."""
    import platform as _platform

    report = Report()
    report.add("python", f"{_platform.python_version()} ({sys.executable})")
    try:
        import torch
        import torchvision

        cuda = torch.version.cuda or "none"
        report.add("torch", f"{torch.__version__}, torchvision {torchvision.__version__}, CUDA build {cuda}")
        from studio.engine.device import describe_device, resolve_device

        report.add("training device", describe_device(resolve_device("auto")))
    except Exception as exc:  # noqa: BLE001 - a broken torch is a finding, not a crash
        report.add("torch", f"cannot be used: {exc.__class__.__name__}: {exc}", ok=False)
    gui = check_gui_libraries()
    report.add("window libraries", gui.message(), gui.ok)
    where = Path(data_dir) if data_dir else Path.cwd()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    report.add("free disk", f"{free / 2**30:.1f} GiB at {where}", free > 2**30)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.services.doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gui-libraries", action="store_true", help="check only what the window needs")
    parser.add_argument("--install", action="store_true",
                        help="install missing Debian/Ubuntu packages where allowed without a password")
    args = parser.parse_args(argv)
    if not args.gui_libraries:
        report = doctor()
        for what, value, ok in report.lines:
            print(f"{'ok ' if ok else 'NO '} {what}: {value}")
        return 0 if report.ok else 1
    gui = check_gui_libraries()
    if gui.ok:
        return 0
    prefix = can_install_packages() if args.install else None
    if prefix is not None and not gui.unknown():
        print(f"installing what Qt's window plugin needs: {' '.join(gui.packages())}", file=sys.stderr)
        if install_packages(gui.packages(), prefix) and check_gui_libraries().ok:
            return 0
        gui = check_gui_libraries()
    print(f"error: {gui.message()}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
