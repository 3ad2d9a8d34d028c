from __future__ import annotations

import json
from pathlib import Path

from craft_agent.agent.offline import OfflineBackend
from craft_agent.bench.agent import run_agent_bench
from craft_agent.masks import ClassicalMaskEngine
from tests.data import make_folder_source, save_png, scene


def test_agent_bench_report(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_folder_source(data / "toy", pairs=1, pre="pre", post="post", masks="mask")
    pre, post, _ = scene(3)
    save_png(data / "nomask" / "pre" / "a.png", pre)
    save_png(data / "nomask" / "post" / "a.png", post)
    report = run_agent_bench({"offline": OfflineBackend}, ClassicalMaskEngine(), pairs=1, seed=2, size=256, data=data)
    offline = report["backends"]["offline"]
    for key in ("gt_coverage", "mean_mask_iou", "type_accuracy", "category_accuracy", "uniqueness_rate"):
        assert 0.0 <= offline[key] <= 1.0
    assert offline["gt_changes"] > 0 and offline["triplets"] > 0 and offline["pairs_per_min"] > 0
    assert offline["gt_coverage"] >= 0.5
    assert offline["duplicate_expressions"] == 0 and offline["triplets_per_change"] > 0
    toy = report["sources"]["toy"]
    # labels mode: the labelled square is the triplet, exactly
    assert (toy["labels"]["pairs"], toy["labels"]["gt_objects"]) == (1, 1)
    assert toy["labels"]["precision"] == toy["labels"]["instance_recall"] == toy["labels"]["union_iou"] == 1.0
    # detector mode: scored the same way, within the budget (at least 6 on a small image)
    detector = toy["detector"]
    assert detector["detector"] == "classical" and detector["triplets_per_pair"] <= 6
    assert 0.0 <= detector["union_iou"] <= 1.0
    assert detector["precision"] is None or 0.0 <= detector["precision"] <= 1.0
    assert report["sources"]["nomask"] == {"error": "no pairs with a ground-truth change mask"}


def test_agent_bench_cli_prints_readable_figures(tmp_path: Path) -> None:
    """The figures table shows each source and mode with figures to two decimals, uncut when written to a log,
    and names a folder it could not score below the table instead of inside it; ``--categories`` narrows the
    detector mode only, and the table says so."""

    from tests.test_cli import craft

    data = tmp_path / "data"
    make_folder_source(data / "toy", pairs=1, pre="pre", post="post", masks="mask")
    pre, post, _ = scene(3)
    save_png(data / "nomask" / "pre" / "a.png", pre)
    save_png(data / "nomask" / "post" / "a.png", post)
    out = tmp_path / "report.json"
    done = craft("bench", "agent", "--pairs", "0", "--data", str(data), "--out", str(out), "--categories", "building")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "│ toy" in line]
    assert [row.split("│")[2].strip() for row in rows] == ["labels", "detector"]
    assert "1.00" in rows[0].split("│")[6] and "1.0000" not in done.stdout
    assert "union IoU" in done.stdout and "…" not in done.stdout, "a log file gets whole headers and figures"
    assert "nomask: no pairs with a ground-truth change mask (not scored)" in done.stdout
    assert "categories: building" in done.stdout
    toy = json.loads(out.read_text())["sources"]["toy"]
    assert toy["detector"]["categories"] == ["building"] and "categories" not in toy["labels"]
