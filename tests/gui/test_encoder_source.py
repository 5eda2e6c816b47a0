"""The New run form's "start the image encoder from": a choice among the project's runs with a
checkpoint of the backbone the form shows (LiT's start), not a path to type."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pytestqt")

from conftest import write_image_folder  # noqa: E402

VIT = ["--backbone", "vit_tiny", "--backbone-option", "num_layers=1", "--backbone-option", "patch_size=4"]
SMALL = ["--image-size", "8", "--device", "cpu", "--monitor-every", "-1", "--steps", "1", "--batch-size", "6", "--json"]


def test_the_form_offers_the_runs_whose_encoder_fits_its_backbone(qtbot, tmp_path, capsys):
    from studio.cli import main
    from studio.gui.new_run_page import NewRunPage
    from studio.services.datasets import add_dataset
    from studio.store import Project

    root = tmp_path / "proj"
    with Project.create(root) as p:
        add_dataset(p, str(write_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=3, size=8)), name="imgs")
    assert main(["train", str(root), "--dataset", "imgs", "--method", "simclr", *VIT, *SMALL]) == 0
    vit = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["train", str(root), "--dataset", "imgs", "--method", "byol", "--backbone", "resnet18", *SMALL]) == 0
    resnet = json.loads(capsys.readouterr().out)["run_id"]
    with Project.open(root) as project:
        create_run_without_checkpoint(project)
        page = NewRunPage()
        qtbot.addWidget(page)
        page.set_datasets(["imgs"])
        page.set_project(project)
        editor = page.setting_editors["init_from"]
        page.backbone_combo.setCurrentIndex(page.backbone_combo.findData("vit_tiny"))
        page.setting_editors["image_size"].set_value(8)
        page.setting_editors["backbone_options"].widget.setText("num_layers=1, patch_size=4")
        editor.widget.showPopup()  # lists what is current when it opens
        editor.widget.hidePopup()
        assert editor.offered() == ["its initialisation", f"run {vit} · simclr on imgs, step 1"]
        editor.widget.setCurrentIndex(1)
        assert page.config().init_from == f"runs/{vit}/last.ckpt"

        # another backbone: the ResNet run is offered, and the ViT checkpoint chosen is kept but marked
        page.backbone_combo.setCurrentIndex(page.backbone_combo.findData("resnet18"))
        page.setting_editors["backbone_options"].widget.setText("")
        editor.refresh()
        assert editor.offered() == ["its initialisation", f"run {resnet} · byol on imgs, step 1",
                                    f"runs/{vit}/last.ckpt (not a checkpoint that fits this backbone)"]
        editor.widget.setCurrentIndex(1)
        assert page.config().init_from == f"runs/{resnet}/last.ckpt"
        editor.widget.setCurrentIndex(0)
        assert page.config().init_from is None

        # a duplicated run's config brings its choice back
        config = page.config()
        import dataclasses

        page.set_config(dataclasses.replace(config, init_from=f"runs/{resnet}/last.ckpt"))
        assert editor.widget.currentText() == f"run {resnet} · byol on imgs, step 1"


def create_run_without_checkpoint(project):
    """A queued run: it has no checkpoint, so it is never offered."""
    from conftest import tiny_train_config
    from studio.services.training import create_run

    create_run(project, "imgs", tiny_train_config(image_size=8))
