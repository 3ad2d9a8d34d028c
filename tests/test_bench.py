from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from craft_agent.bench.vision import baseline_change, run_vision_bench
from craft_agent.masks import ClassicalMaskEngine
from tests.data import make_folder_source
from tests.test_cli import craft


def test_baseline_is_otsu_on_mean_absolute_difference() -> None:
    pre = np.zeros((20, 20, 3), np.uint8)
    post = pre.copy()
    post[5:10, 5:10] = 200
    assert baseline_change(pre, post).sum() == 25
    assert not baseline_change(pre, pre).any()


def test_vision_bench_report_shape_and_values(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_folder_source(data / "toy", pairs=2, pre="pre", post="post", masks="mask")
    report = run_vision_bench(data, ClassicalMaskEngine(), synthetic_count=2, seed=1)
    assert set(report["sources"]) == {"synthetic", "toy"}
    for metrics in report["sources"].values():
        for key in (
            "object_recall_50",
            "object_recall_25",
            "precision",
            "pixel_f1",
            "pixel_iou",
            "baseline_pixel_f1",
            "sec_per_pair",
        ):
            assert 0.0 <= metrics[key] <= (1.0 if key != "sec_per_pair" else 60.0), (key, metrics[key])
    toy = report["sources"]["toy"]
    assert toy["pairs"] == 2 and toy["gt_objects"] == 2
    assert toy["object_recall_50"] == 1.0  # a bright square on texture must be found
    assert "type_accuracy" in report["sources"]["synthetic"]


def test_bench_vision_cli_writes_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_folder_source(data / "toy", pairs=1, pre="pre", post="post", masks="mask")
    out = tmp_path / "bench.json"
    done = craft("bench", "vision", "--data", str(data), "--out", str(out), "--synthetic-pairs", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["sources"]["toy"]["pairs"] == 1
    assert json.loads(done.stdout)["engine"] == "classical"
    missing = craft("bench", "vision", "--data", str(tmp_path / "nope"), "--out", str(out), "--json")
    assert missing.returncode == 2 and "not a folder" in json.loads(missing.stdout)["error"]


def test_benchmarks_find_sources_in_every_layout_and_refuse_a_folder_with_none(tmp_path: Path) -> None:
    """A dataset as distributed (split folders), SECOND-style im1/ im2/ and S2Looking-style Image1/ Image2/ are
    sources of --data as much as pre/ post/ folders are; a --data with none is refused, not scored as empty."""
    from craft_agent.bench.vision import source_folders
    from craft_agent.imagery import discover

    data = tmp_path / "data"
    make_folder_source(data / "LEVIR-CD" / "train", pairs=1)
    make_folder_source(data / "LEVIR-CD" / "test", pairs=1)
    make_folder_source(data / "sysu", pairs=1, pre="time1", post="time2")
    make_folder_source(data / "plain", pairs=1, pre="pre", post="post", masks="mask")
    (data / "notes").mkdir()
    assert [f.name for f in source_folders(data)] == ["LEVIR-CD", "plain", "sysu"]
    assert list(source_folders(data / "LEVIR-CD")) == [data / "LEVIR-CD"]
    # ingest reads the same folder as a collection, the dataset's split folders included
    assert sorted(spec.name for spec in discover(data).specs) == [
        "LEVIR-CD/test/p0",
        "LEVIR-CD/train/p0",
        "plain/p0",
        "sysu/p0",
    ]
    report = run_vision_bench(data, ClassicalMaskEngine(), synthetic_count=0)
    assert {name: s["pairs"] for name, s in report["sources"].items()} == {"LEVIR-CD": 2, "plain": 1, "sysu": 1}
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    result = craft("bench", "vision", "--data", str(empty), "--out", str(tmp_path / "r.json"))
    assert result.returncode != 0 and "holds no source folder" in result.stderr
