"""The PySide6 desktop studio: main window, pages, plots and the workers that drive the engine.

Only this package imports Qt (DESIGN.md rule 1); `studio.gui.app.run_gui` is the entry point.
"""
