"""Exploring a run's embedding space: the use cases behind the Explorer page, without Qt.

`FileEmbedder` embeds an image file that is not in the dataset (dropped on the map) with the
encoder of a run's checkpoint: open the image, resize it as the dataset's images were, encode,
embed. The encoder is loaded once per (run, checkpoint) and kept for the next file.
"""

from __future__ import annotations

import os

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
