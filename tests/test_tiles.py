"""Overlapping tiles of one scene: each change is drafted once, on the tile that owns it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from craft_agent.agent.offline import OfflineBackend
from craft_agent.agent.run import generate
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.change.tiles import owns
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.imagery.normalize import tile_windows
from craft_agent.masks import ClassicalMaskEngine
from craft_agent.models import BBox, RLEMask, TileWindow
from craft_agent.synthetic import write_examples


def _windows(size: int, tile: int, overlap: int) -> list[TileWindow]:
    return [
        TileWindow(
            col_off=w.col_off, row_off=w.row_off, width=w.width, height=w.height, scene_width=size, scene_height=size
        )
        for w in tile_windows(size, size, tile, overlap)
    ]


def _keepers(scene_box: tuple[int, int, int, int], windows: list[TileWindow]) -> list[TileWindow]:
    """The tiles that keep an object with this scene box, each judging the part it sees."""
    keepers = []
    for tile in windows:
        x0 = max(scene_box[0], tile.col_off) - tile.col_off
        y0 = max(scene_box[1], tile.row_off) - tile.row_off
        x1 = min(scene_box[2], tile.col_off + tile.width) - tile.col_off
        y1 = min(scene_box[3], tile.row_off + tile.height) - tile.row_off
        if x1 > x0 and y1 > y0 and owns(BBox(x0=x0, y0=y0, x1=x1, y1=y1), tile, windows):
            keepers.append(tile)
    return keepers


def test_every_object_is_kept_by_exactly_one_tile_wherever_it_lies() -> None:
    windows = _windows(1000, 400, 100)
    assert len(windows) == 9
    rng = np.random.default_rng(0)
    for _ in range(400):
        width, height = (int(v) for v in rng.integers(4, 260, size=2))  # some larger than the overlap
        x0, y0 = int(rng.integers(0, 1000 - width)), int(rng.integers(0, 1000 - height))
        assert len(_keepers((x0, y0, x0 + width, y0 + height), windows)) == 1, (x0, y0, width, height)
    assert owns(BBox(x0=0, y0=0, x1=5, y1=5), None, [])


def test_a_scene_cut_into_tiles_drafts_each_labelled_change_once(tmp_path: Path) -> None:
    write_examples(tmp_path / "examples", pairs=1, seed=5, size=640, street_fraction=0.0)
    workspace = tmp_path / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        summary = ingest(tmp_path / "examples", catalog, store, IngestOptions(tile_size=384, tile_overlap=128))
        assert summary.ingested == 4 and summary.tiled_scenes == 1
        generate(catalog, store, OfflineBackend(), ClassicalMaskEngine(), workspace)
        pairs = {p.id: p for p in catalog.iter_pairs()}
        scene_masks = []
        for triplet in catalog.iter_triplets():
            if triplet.is_no_target or len(triplet.candidate_ids) != 1:
                continue
            tile = pairs[triplet.pair_id].tile
            assert tile is not None
            full = np.zeros((640, 640), bool)
            full[tile.row_off : tile.row_off + tile.height, tile.col_off : tile.col_off + tile.width] = (
                triplet.mask.to_array()
            )
            scene_masks.append(RLEMask.from_array(full))
    assert scene_masks
    # no object twice: the kept masks barely overlap in scene coordinates
    for index, mask in enumerate(scene_masks):
        for other in scene_masks[index + 1 :]:
            assert mask.iou(other) < 0.3
