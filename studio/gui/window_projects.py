"""The main window's projects and datasets: open, create, close, the recent list, the sample,
and datasets added on a task (a mixin of MainWindow; the settings helpers live in main_window,
where tests replace them)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from studio.gui.chrome import mw
from studio.gui.tasks import Progress, start_task
from studio.gui.widgets import message_box, plain_tip


class ProjectHandling:
    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = mw.recent_projects()
        for path in recent:
            a = self.recent_menu.addAction(Path(path).name)
            a.setToolTip(plain_tip(path))
            a.setStatusTip(path)
            a.triggered.connect(lambda _=False, p=path: self.try_(lambda: self.open_project(p)))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear the list", self._clear_recent)
        self.recent_menu.setEnabled(bool(recent))

    def recent_menu_entries(self) -> list[str]:
        self._fill_recent_menu()
        return [a.text() for a in self.recent_menu.actions() if not a.isSeparator()]

    def _clear_recent(self) -> None:
        mw.settings().setValue("recent_projects", [])
        self._fill_recent_menu()
        self.welcome.set_recent([])

    # -- projects ---------------------------------------------------------------------------
    def open_project(self, path) -> bool:
        """Open (or switch to) a project folder; errors reach the caller as ProjectError."""
        from studio.store import Project

        if self.jobs and not self._confirm_stop_jobs():
            return False
        project = Project.open(path)
        self._close_project()
        self._set_project(project)
        self.welcome.set_recent(mw.remember_project(project.root))
        self.setWindowTitle(f"{project.root.name}{' (read-only)' if project.read_only else ''} — SSL Studio")
        if project.read_only:
            from studio.services.runs import writable

            self.statusBar().showMessage(writable(project).reason, 0)
        self.stack.setCurrentWidget(self.splitter)
        runs = project.runs()
        if runs:
            self.panel.select_run(runs[-1].id)
        elif self.panel.dataset_names():
            self.panel.select_dataset(self.panel.dataset_names()[0])
        self.update_actions()
        return True

    def _set_project(self, project) -> None:
        self.project = project
        self.runs.set_project(project)
        for title, widget in self._pages.items():
            if title not in self._factories and hasattr(widget, "set_project"):
                widget.set_project(project)
        self._rebuild_factory_pages()
        self.panel.set_project(project)
        self.new_run_page.set_datasets(self.panel.dataset_names())

    def create_project(self, path) -> bool:
        from studio.store import Project

        Project.create(path).close()
        return self.open_project(path)

    def open_sample_project(self) -> bool:
        from studio.services.datasets import ensure_sample_project

        path = mw.sample_project_path()
        ensure_sample_project(path).close()
        return self.open_project(path)

    def try_sample(self) -> bool:
        """"Try the sample": the sample project, and the New run form ready with SimCLR on it."""
        from studio.engine.train import TrainConfig

        if not self.open_sample_project():
            return False
        self.show_new_run("sample")
        # SimCLR on the digits at 32 px, sized to about five minutes on this device (services/budget).
        self.new_run_page.set_config(TrainConfig(method="simclr", backbone="resnet18", image_size=32), dataset="sample")
        self.new_run_page.choose_budget("5m")
        return True

    def _close_project(self) -> None:
        if self.export_dialog is not None:
            self.export_dialog.close()
            self.export_dialog = None
        if self.project is not None:
            self.project.close()
            self.project = None

    def close_project(self) -> bool:
        """Back to the welcome page (stopping this window's runs, if the user agrees)."""
        if self.project is None:
            return True
        if self.jobs and not self._confirm_stop_jobs():
            return False
        self._close_project()
        self._set_project(None)
        self.setWindowTitle("SSL Studio")
        self.welcome.set_recent(mw.recent_projects())
        self.stack.setCurrentWidget(self.welcome)
        self.update_actions()
        return True

    def show_welcome(self) -> None:
        self.stack.setCurrentWidget(self.welcome)

    def new_project_dialog(self) -> None:
        path = QFileDialog.getSaveFileName(self, "New project folder", str(Path.home() / "SSL project"))[0]
        if path:
            self.try_(lambda: self.create_project(path))

    def open_project_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a project folder", str(Path.home()))
        if path:
            self.try_(lambda: self.open_project(path))

    def try_(self, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a typed error whose text the user can act on
            message_box(self, "SSL Studio", str(exc))

    # -- datasets ---------------------------------------------------------------------------
    def add_dataset_source(self, spec: str, name: str | None = None) -> None:
        """Add a dataset (folder | 'sample' | torchvision:NAME) on a task; it appears when done."""
        from studio.services.datasets import add_dataset
        from studio.store import Project

        if self.project is None:
            return
        root = self.project.root
        self.statusBar().showMessage(f"Reading {spec}…")
        self._adding_datasets += 1
        self.dataset_progress_bar.setRange(0, 0)  # busy until the first count arrives
        self.dataset_progress_bar.setFormat("reading images %p%")
        self.dataset_progress_bar.show()

        def progress(state, done, total):
            state.check()  # Cancel: stop reading (nothing is stored until every image was read)
            state.report("reading", done, total)

        def work(state):
            with Project.open(root) as p:
                return add_dataset(p, spec, name=name, progress=lambda done, total: progress(state, done, total))

        task = start_task(work, self._on_dataset_added, self._on_dataset_failed, self._on_dataset_progress,
                          name="add-dataset", parent=self)
        task.cancelled.connect(self._on_dataset_cancelled)
        self._dataset_tasks.append(task)
        task.ended.connect(lambda: self._dataset_tasks.remove(task))
        self.dataset_cancel_button.show()

    def _on_dataset_progress(self, p: Progress) -> None:
        if p.total > 0:
            self.dataset_progress_bar.setRange(0, p.total)
            self.dataset_progress_bar.setValue(p.done)

    def _dataset_task_ended(self) -> None:
        self._adding_datasets = max(0, self._adding_datasets - 1)
        if not self._adding_datasets:
            self.dataset_progress_bar.hide()
            self.dataset_cancel_button.hide()

    def cancel_adding_datasets(self) -> None:
        for task in list(self._dataset_tasks):
            task.cancel()

    def _on_dataset_cancelled(self) -> None:
        self._dataset_task_ended()
        self.statusBar().showMessage("Adding the dataset was cancelled; nothing was stored.", 8000)

    def add_sample(self) -> None:
        self.add_dataset_source("sample")

    def add_dataset_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder of images", str(Path.home()))
        if path:
            self.add_dataset_source(path)

    def _on_dataset_added(self, record) -> None:
        self._dataset_task_ended()
        if self.project is None:
            return
        skipped = f", {record.skipped} skipped" if record.skipped else ""
        self.statusBar().showMessage(f"Added dataset {record.name}: {record.images:,} images{skipped}.", 8000)
        self.panel.refresh()
        self.new_run_page.set_datasets(self.panel.dataset_names())
        self.panel.select_dataset(record.name)

    def _on_dataset_failed(self, error: str) -> None:
        self._dataset_task_ended()
        self.statusBar().showMessage(f"Could not add the dataset: {error}", 15000)
        if self.isVisible():
            message_box(self, "Add dataset", error)

    def _on_dataset_selected(self, record) -> None:
        self.dataset_page.show_dataset(record)
        self.show_page("Dataset")

    def show_new_run(self, dataset: str | None = None) -> None:
        self.new_run_page.set_datasets(self.panel.dataset_names())
        if dataset:
            self.new_run_page.select_dataset(dataset)
        self.show_page("New run")

