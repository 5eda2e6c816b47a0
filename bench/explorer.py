"""The embedding explorer's speed: drawing and panning a 100,000-point map, and each 2-D map's time.

Prints one JSON line:
  build_s         set_data of N points (k-d tree, one ScatterPlotItem per colour) + the first paint
  pan_ms_per_frame  mean time of a pan step (view range moved, scene repainted), over 30 frames
  hover_ms        mean time to find the point under the mouse (k-d tree query)
  neighbours_ms   mean time of a click's 16 nearest neighbours through the search the app uses at N
                  (above 50,000 embeddings the IVF index; exact_neighbours_ms: exact search instead)
  index_build_s   building that index (in the map's worker in the app), its nprobe/cells and recall
  lasso_ms        a lasso around a tenth of the map: points inside found, ringed, thumbnails listed
  colour_ms       recolouring every point (label -> k-means cluster -> label), repainted
  map_s           {"pca": s, "tsne": s, "umap": s} for M embeddings (umap's first-call JIT included
                  in umap_first_s, then timed again warm)
Usage: python bench/explorer.py [--points 100000] [--map-points 10000 (0: skip maps)] [--dim 128] [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import emit


def clustered(n: int, dim: int, classes: int = 10, seed: int = 0, latent: int = 16):
    # Class centres plus variation along a few directions, as real embeddings have (noise in all
    # `dim` directions would make every neighbour as far as any other, which no encoder gives).
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    labels = rng.integers(0, classes, size=n)
    spread = rng.normal(size=(n, latent)) @ rng.normal(size=(latent, dim)) / np.sqrt(latent)
    return (centres[labels] + spread + 0.1 * rng.normal(size=(n, dim))).astype(np.float32), labels


def bench_view(n: int, dim: int) -> dict:
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QApplication

    from studio.engine.eval import NeighbourIndex
    from studio.gui.explorer import ExplorerPage

    app = QApplication.instance() or QApplication([])
    vectors, labels = clustered(n, dim)
    coords = vectors[:, :2] * 10
    images = np.zeros((n, 3, 8, 8), np.uint8)  # a view of a memory-mapped cache in the app
    names = [f"img/{i:06d}.png" for i in range(n)]
    page = ExplorerPage(None)
    page.resize(1200, 800)
    page.show()
    app.processEvents()

    t0 = time.perf_counter()
    page.set_data(vectors, coords, labels, names, images, [str(c) for c in range(10)])
    page.map_view.viewport().repaint()
    app.processEvents()
    build_s = time.perf_counter() - t0
    assert page.map_view.point_count() == n

    vb = page.map_view.getViewBox()
    (x0, x1), (y0, y1) = vb.viewRange()
    step = (x1 - x0) / 60
    frames = 30
    t0 = time.perf_counter()
    for i in range(frames):
        vb.translateBy(x=step if i < frames // 2 else -step)
        page.map_view.viewport().repaint()
        app.processEvents()
    pan_ms = (time.perf_counter() - t0) / frames * 1000

    rng = np.random.default_rng(1)
    queries = coords[rng.integers(0, n, 200)]
    t0 = time.perf_counter()
    for q in queries:
        page.map_view.index_at(QPointF(float(q[0]), float(q[1])))
    hover_ms = (time.perf_counter() - t0) / len(queries) * 1000

    def clicks() -> float:
        page.show_neighbors(0)  # the first click of a map pays for an exact index's normalised rows
        t0 = time.perf_counter()
        for i in rng.integers(0, n, 20):
            page.show_neighbors(int(i))
            app.processEvents()
        return (time.perf_counter() - t0) / 20 * 1000

    exact_ms = clicks()
    t0 = time.perf_counter()
    index = NeighbourIndex(vectors)  # what the map's worker builds in the app
    index_s = time.perf_counter() - t0
    page.set_data(vectors, coords, labels, names, images, [str(c) for c in range(10)], index=index)
    neighbours_ms = clicks() if index.kind == "ivf" else exact_ms

    # A lasso around a tenth of the points (a circle about a class centre), as a drawn loop.
    centre = np.median(coords[labels == 0], axis=0)
    radius = np.quantile(np.linalg.norm(coords - centre, axis=1), 0.1)
    angles = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    loop = centre + radius * np.column_stack([np.cos(angles), np.sin(angles)])
    t0 = time.perf_counter()
    for _ in range(5):
        chosen = page.select_polygon(loop)
        page.map_view.viewport().repaint()
        app.processEvents()
    lasso_ms = (time.perf_counter() - t0) / 5 * 1000

    page.clusters = (labels + 3) % 10  # k-means itself runs in a worker; here only the recolouring
    t0 = time.perf_counter()
    for data in ("cluster", "label") * 3:
        page.colour_box.setCurrentIndex(page.colour_box.findData(data))
        page.map_view.viewport().repaint()
        app.processEvents()
    colour_ms = (time.perf_counter() - t0) / 6 * 1000
    page.close()
    page.deleteLater()
    app.processEvents()
    return {"points": n, "build_s": round(build_s, 3), "pan_ms_per_frame": round(pan_ms, 1),
            "hover_ms": round(hover_ms, 3), "neighbours_ms": round(neighbours_ms, 2),
            "exact_neighbours_ms": round(exact_ms, 2), "search": index.kind, "index_build_s": round(index_s, 2),
            "index_cells": index.cells, "index_nprobe": index.nprobe, "index_recall": round(index.recall, 3),
            "lasso_ms": round(lasso_ms, 1), "lasso_points": int(len(chosen)), "colour_ms": round(colour_ms, 1)}


def bench_maps(m: int, dim: int) -> dict:
    from studio.engine.eval import project_2d

    vectors, _ = clustered(m, dim, seed=2)
    out: dict = {}
    for algorithm in ("pca", "tsne", "umap"):
        t0 = time.perf_counter()
        coords = project_2d(vectors, algorithm, seed=None if algorithm == "umap" else 0)
        out[algorithm] = round(time.perf_counter() - t0, 2)
        assert coords.shape == (m, 2)
    # umap's first call pays numba's compilation; a second call shows the steady cost.
    t0 = time.perf_counter()
    project_2d(vectors, "umap", seed=None)
    out["umap_first"] = out["umap"]
    out["umap"] = round(time.perf_counter() - t0, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--map-points", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="20,000 points and 1,000-embedding maps")
    args = parser.parse_args()
    if args.quick:
        args.points, args.map_points = 20_000, 1_000
    view = bench_view(args.points, args.dim)
    maps = bench_maps(args.map_points, args.dim) if args.map_points > 0 else {}
    emit("explorer", **view, map_points=args.map_points, dim=args.dim, map_s=maps)


if __name__ == "__main__":
    main()
