"""Exploring a run's embedding space: the use cases behind the Explorer page, without Qt.

`write_selection` writes the files a person selected on the map. `FileEmbedder` embeds an image file that is not in the dataset (dropped on the map) with the
encoder of a run's checkpoint: open the image, resize it as the dataset's images were, encode,
embed. The encoder is loaded once per (run, checkpoint) and kept for the next file.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from studio.store import Project


class FileEmbedder:
    def __init__(self, project: Project, run_id: int, checkpoint_step: int | None = None, device: str = "cpu"):
        self.project = project
        self.run_id = int(run_id)
        self.checkpoint_step = checkpoint_step
        self.device = device
        self._encoder = None

    def _load(self):
        from studio.services.evaluation import run_encoder

        if self._encoder is None:
            self._encoder = run_encoder(self.project, self.run_id, self.checkpoint_step, self.device)
        return self._encoder

    def embed(self, path: str | os.PathLike) -> np.ndarray:
        """The embedding (D,) of the image file at `path` (call off the GUI thread: it runs torch)."""
        from studio.engine.data.cache import resize_square
        from studio.engine.data.sources import open_image_file
        from studio.engine.eval import embed_images

        encoder, config, _ = self._load()
        pixels = resize_square(open_image_file(str(path)), config.image_size)[None]
        return embed_images(encoder, pixels, 1, config.image_size)[0]


def write_selection(path: str | os.PathLike, indices, names: Sequence[str], labels, class_names: Sequence[str],
                    coords) -> Path:
    """The selected points' files: a .csv with index, file, label, class, x, y; any other
    suffix, one file a line."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["index", "file", "label", "class", "x", "y"])
            for i in (int(i) for i in indices):
                lab = int(labels[i])
                cls = class_names[lab] if 0 <= lab < len(class_names) else ""
                w.writerow([i, names[i], lab, cls, float(coords[i, 0]), float(coords[i, 1])])
    else:
        path.write_text("".join(f"{names[int(i)]}\n" for i in indices), encoding="utf-8")
    return path
