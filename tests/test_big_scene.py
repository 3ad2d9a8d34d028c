"""``craft-agent bench big-scene``: the peak memory of one large GeoTIFF ingest, measured in a child process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio

from craft_agent.bench.big_scene import run_big_scene_bench, write_scene_pair
from tests.test_cli import craft


def test_the_scene_is_written_tiled_compressed_and_with_its_change(tmp_path: Path) -> None:
    root = write_scene_pair(tmp_path / "scene", side=600)
    with rasterio.open(root / "pre" / "T31TCJ.tif") as pre, rasterio.open(root / "post" / "T31TCJ.tif") as post:
        layout = (pre.count, pre.dtypes[0], pre.block_shapes[0], pre.compression.value)
        assert layout == (4, "uint16", (512, 512), "DEFLATE")
        before, after = pre.read(), post.read()
    with rasterio.open(root / "mask" / "T31TCJ.tif") as mask:
        changed = mask.read(1) > 0
    assert changed.sum() == 30 * 40 and (after[:, changed] == 3000).all()
    assert np.array_equal(after[:, ~changed], before[:, ~changed] + 40)


def test_big_scene_bench_reports_the_peak_memory_of_the_ingest(tmp_path: Path) -> None:
    report = run_big_scene_bench(side=2500, root=tmp_path)
    assert set(report) == {"side", "bands", "tiles", "peak_rss_mb", "seconds", "target_mb"}
    assert (report["side"], report["bands"], report["tiles"], report["target_mb"]) == (2500, 4, 9, 2048)  # 3 x 3 tiles
    assert 50 < report["peak_rss_mb"] < 2048 and report["seconds"] > 0
    assert list(tmp_path.iterdir()) == []  # scene and workspace are removed


def test_bench_big_scene_cli_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "big.json"
    done = craft("bench", "big-scene", "--out", str(out), "--side", "600", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["tiles"] == 1 and json.loads(done.stdout)["side"] == 600
