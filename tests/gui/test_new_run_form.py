"""The New run form is generated from METHODS, BACKBONES and each method's fields."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox  # noqa: E402


@pytest.fixture
def page(qtbot):
    from studio.gui.new_run_page import NewRunPage

    p = NewRunPage()
    qtbot.addWidget(p)
    p.set_datasets(["sample"])
    return p


def test_every_method_shows_its_fields_with_their_defaults(page):
    from studio.engine.methods import METHODS

    assert [page.method_combo.itemData(i) for i in range(page.method_combo.count())] == list(METHODS)
    for name, cls in METHODS.items():
        page.method_combo.setCurrentIndex(page.method_combo.findData(name))
        assert cls.family in page.method_combo.currentText()
        assert cls.summary in page.method_info.text()
        fields = cls.fields()
        assert list(page.field_editors) == [f.name for f in fields]
        for info in fields:
            editor = page.field_editors[info.name]
            assert editor.widget.toolTip().startswith(info.help)
            if info.type == "float":
                assert editor.value() == pytest.approx(info.default, rel=1e-6)
            else:
                assert editor.value() == info.default
            if info.choices:
                assert isinstance(editor.widget, QComboBox)
            elif info.type == "bool":
                assert isinstance(editor.widget, QCheckBox)
            elif info.type in ("int", "float"):
                assert isinstance(editor.widget, (QSpinBox, QDoubleSpinBox))
        assert page.config().method_config == {f.name: f.default for f in fields} or all(
            page.config().method_config[f.name] == pytest.approx(f.default) for f in fields)


def test_field_bounds_are_enforced(page):
    from studio.engine.methods import METHODS

    checked = 0
    for name, cls in METHODS.items():
        page.method_combo.setCurrentIndex(page.method_combo.findData(name))
        for info in cls.fields():
            w = page.field_editors[info.name].widget
            if isinstance(w, (QSpinBox, QDoubleSpinBox)):
                if info.max is not None:
                    w.setValue(info.max + 1000)
                    assert w.value() == pytest.approx(info.max)
                    checked += 1
                if info.min is not None:
                    w.setValue(info.min - 1000)
                    assert w.value() == pytest.approx(info.min)
                    checked += 1
                page.field_editors[info.name].set_value(info.default)
    assert checked >= 3  # SimCLR alone has bounded fields
    page.method_combo.setCurrentIndex(page.method_combo.findData("simclr"))
    assert page.start_button.isEnabled(), page.error_label.text()


def test_config_from_the_form(page):
    page.length_unit.setCurrentIndex(page.length_unit.findData("steps"))
    page.length_spin.setValue(30)
    page.batch_spin.setValue(32)
    page.image_size_spin.setValue(16)
    page.device_combo.setCurrentIndex(page.device_combo.findData("cpu"))
    cfg = page.config()
    assert (cfg.steps, cfg.epochs, cfg.batch_size, cfg.image_size, cfg.device, cfg.lr) == (30, None, 32, 16, "cpu", None)
    page.lr_edit.setText("0.01")
    assert page.config().lr == pytest.approx(0.01)
    assert page.start_button.isEnabled()
    page.lr_edit.setText("0")
    assert not page.start_button.isEnabled()
    assert "learning rate" in page.error_label.text()
    page.lr_edit.setText("")
    assert page.start_button.isEnabled() and page.error_label.text() == ""


def test_a_method_that_cannot_use_the_backbone_disables_start(qtbot, monkeypatch):
    """A method restricted to ViTs (as masked-image methods are) refuses a CNN before Start."""
    from studio.engine import methods
    from studio.engine.methods.simclr import SimCLR
    from studio.gui.new_run_page import NewRunPage

    class ViTOnly(SimCLR):
        name = "vit_only"
        title = "ViT-only test method"
        backbone_kinds = ("vit",)

    monkeypatch.setitem(methods.METHODS, "vit_only", ViTOnly)
    page = NewRunPage()
    qtbot.addWidget(page)
    page.set_datasets(["sample"])
    page.method_combo.setCurrentIndex(page.method_combo.findData("vit_only"))
    page.backbone_combo.setCurrentIndex(page.backbone_combo.findData("resnet18"))
    assert not page.start_button.isEnabled()
    assert "ViT" in page.error_label.text() and "resnet18" in page.error_label.text()
    page.backbone_combo.setCurrentIndex(page.backbone_combo.findData("vit_tiny"))
    assert page.start_button.isEnabled(), page.error_label.text()
    assert page.error_label.text() == ""


def test_pages_can_be_added_and_follow_the_open_project(qtbot, project, tmp_path, monkeypatch):
    """The explorer and compare views plug in with add_page; a factory page is rebuilt per project."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QLabel

    import studio.gui.main_window as mw
    from studio.store import Project

    ini = str(tmp_path / "settings.ini")
    monkeypatch.setattr(mw, "settings", lambda: QSettings(ini, QSettings.Format.IniFormat))
    w = mw.MainWindow()
    qtbot.addWidget(w)
    seen = []

    class Aware(QLabel):
        def set_project(self, p):
            seen.append(p.root)

    w.add_page("Aware", Aware())
    w.add_page("Built", factory=lambda p: QLabel(f"for {p.root.name}"))
    assert "Open a project" in w.page("Built").text()
    w.open_project(project.root)
    assert seen == [project.root]
    assert w.page("Built").text() == f"for {project.root.name}"
    other = Project.create(tmp_path / "other")
    other.close()
    w.open_project(tmp_path / "other")
    assert w.page("Built").text() == "for other" and seen[-1] == (tmp_path / "other").resolve()
    w.show_page("Built")
    assert w.current_page_title() == "Built"


def test_the_warm_up_says_its_steps_and_its_cap_on_the_chosen_dataset(qtbot, project):
    """Seen: 'warm-up 10 epochs' ended at step 4 of 40. The hint says what the Trainer will do:
    the sample's 1,797 images in batches of 64 are 28 steps an epoch."""
    from studio.gui.new_run_page import NewRunPage

    page = NewRunPage()
    qtbot.addWidget(page)
    page.set_project(project)
    page.set_datasets(["sample"])
    page.setting_editors["batch_size"].set_value(64)
    page.length_unit.setCurrentIndex(page.length_unit.findData("steps"))
    page.length_spin.setValue(40)
    page.setting_editors["warmup_epochs"].set_value(10.0)
    page.validate()
    assert page.warmup_hint.text() == "= 4 of 40 steps (capped at 10% of the run)"
    page.length_unit.setCurrentIndex(page.length_unit.findData("epochs"))
    page.length_spin.setValue(100)
    page.setting_editors["warmup_epochs"].set_value(2.0)
    page.validate()
    assert page.warmup_hint.text() == "= 56 of 2,800 steps"


def test_a_setting_whose_zero_has_a_meaning_says_it(qtbot):
    """Issue 16, item 19: the form showed SimCLR's 'hidden dim 0'; 0 there is the backbone's
    feature size, and the spin box says so (the help text of the setting is the one source)."""
    from studio.gui.new_run_page import NewRunPage

    page = NewRunPage()
    qtbot.addWidget(page)
    page.method_combo.setCurrentIndex(page.method_combo.findData("simclr"))
    spin = page.field_editors["hidden_dim"].widget
    assert spin.value() == 0 and spin.text() == "the backbone's feature size"
    spin.setValue(512)
    assert spin.text() == "512" and page.config().method_config.get("hidden_dim") == 512
    assert page.setting_editors["checkpoint_every"].widget.text() == "by time only"
