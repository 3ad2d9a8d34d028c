"""``craft-agent bench big-scene``: the peak memory of ingesting one Sentinel-2 sized GeoTIFF pair.

A synthetic pair of 4-band uint16 GeoTIFFs of ``side`` x ``side`` px (10980: one Sentinel-2 tile at 10 m), tiled
in 512 px blocks and DEFLATE-compressed, with a 0/255 GeoTIFF change mask on the same grid, is written strip by
strip (so the writer holds one strip, never a scene). A child process then ingests it with the default
settings, as ``craft-agent ingest`` would, and reports its own peak resident set size (``ru_maxrss``, which
counts the interpreter and every library it loaded) and the seconds the ingest took. Target: under 2048 MB.

``python -m craft_agent.bench.big_scene SOURCE WORKSPACE`` is that child.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from craft_agent.errors import CraftError

BANDS = 4
TARGET_MB = 2048
BLOCK = 512
"""Side of the GeoTIFF blocks, and the height of the strips the scene is written in."""

_UTM_31N_TILE = Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 5000040.0)  # T31TCJ's corner, 10 m pixels


def write_scene_pair(root: Path, side: int, seed: int = 0) -> Path:
    """Write ``root``/pre, post and mask ``T31TCJ.tif``: a textured 4-band uint16 scene, the same scene a year
    later with a block that brightened (as a new roof would), and the block's 0/255 mask.

    Returns:
        ``root``, a source folder ``craft-agent ingest`` reads.
    """
    rng = np.random.default_rng(seed)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": side,
        "height": side,
        "crs": "EPSG:32631",
        "transform": _UTM_31N_TILE,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "zlevel": 1,
        "num_threads": "all_cpus",
    }
    block_rows = slice(side // 3, side // 3 + max(side // 20, 1))
    block_cols = slice(side // 2, side // 2 + max(side // 15, 1))
    columns = np.sin(np.arange(side) / 157.0)
    paths = {name: root / name / "T31TCJ.tif" for name in ("pre", "post", "mask")}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    deep = {**profile, "count": BANDS, "dtype": "uint16", "predictor": 2}
    with (
        rasterio.open(paths["pre"], "w", **deep) as pre,
        rasterio.open(paths["post"], "w", **deep) as post,
        rasterio.open(paths["mask"], "w", **profile, count=1, dtype="uint8") as mask,
    ):
        pre.update_tags(TIFFTAG_DATETIME="2020:06:01 10:30:00")
        post.update_tags(TIFFTAG_DATETIME="2021:06:01 10:30:00")
        for row in range(0, side, BLOCK):
            height = min(BLOCK, side - row)
            window = Window(0, row, side, height)
            field = 1200.0 + 500.0 * np.outer(np.cos(np.arange(row, row + height) / 211.0), columns)
            earlier = np.empty((BANDS, height, side), dtype=np.uint16)
            for band in range(BANDS):
                earlier[band] = field * (0.8 + 0.15 * band) + rng.integers(0, 200, size=(height, side))
            later = earlier + np.uint16(40)  # a slightly brighter season
            changed = np.zeros((height, side), dtype=np.uint8)
            rows = slice(max(block_rows.start - row, 0), max(min(block_rows.stop - row, height), 0))
            changed[rows, block_cols] = 255
            later[:, changed > 0] = 3000
            pre.write(earlier, window=window)
            post.write(later, window=window)
            mask.write(changed[None], window=window)
    return root


def measure_ingest(source: Path, workspace: Path) -> dict[str, Any]:
    """Ingest ``source`` into a new catalog in ``workspace`` with the default settings; run in the child.

    Returns:
        tiles (pairs now in the catalog), failures, seconds of the ingest, and this process's peak RSS in MB.
    """
    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.imagery import IngestOptions, ingest
    from craft_agent.settings import Settings

    started = time.perf_counter()
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        options = IngestOptions.from_settings(Settings(workspace=workspace))
        summary = ingest(source, catalog, ImageStore(workspace), options)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return {
        "tiles": len(summary.present_ids),
        "failed": [failure.as_dict() for failure in summary.failed],
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def run_big_scene_bench(
    side: int = 10980, root: Path | None = None, report: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Write the synthetic pair, ingest it in a child process and report its peak memory.

    Args:
        side: width and height of the scene in px (10980: a Sentinel-2 tile).
        root: folder for the scene and the workspace (removed afterwards); default: the system's temporary
            folder. A 10980 px pair takes about 2 GB of disk.
        report: called with a line of progress now and then.

    Returns:
        ``{"side", "bands", "tiles", "peak_rss_mb", "seconds", "target_mb"}``: seconds of the ingest alone.

    Raises:
        CraftError: when the ingest fails or the child process dies (out of memory, for one).
    """
    say = report or (lambda line: None)
    with tempfile.TemporaryDirectory(prefix="craft-big-scene-", dir=root) as folder:
        started = time.perf_counter()
        source = write_scene_pair(Path(folder) / "scene", side)
        say(f"wrote a {side} x {side} px {BANDS}-band uint16 pair in {time.perf_counter() - started:.0f} s")
        workspace = Path(folder) / "workspace"
        workspace.mkdir()
        command = [sys.executable, "-m", "craft_agent.bench.big_scene", str(source), str(workspace)]
        child = subprocess.run(command, capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise CraftError(
            f"the child process ingesting the {side} px scene exited with status {child.returncode}: "
            f"{child.stderr.strip()[-2000:] or 'no message'}",
            hint="a negative status is a signal (-9: killed, often for memory); run with a smaller --side to compare.",
        )
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    if measured["failed"]:
        raise CraftError(
            f"the {side} px scene did not ingest: {measured['failed']}",
            hint="report this as a bug with the output attached.",
        )
    return {
        "side": side,
        "bands": BANDS,
        "tiles": measured["tiles"],
        "peak_rss_mb": measured["peak_rss_mb"],
        "seconds": measured["seconds"],
        "target_mb": TARGET_MB,
    }


if __name__ == "__main__":
    print(json.dumps(measure_ingest(Path(sys.argv[1]), Path(sys.argv[2]))))
