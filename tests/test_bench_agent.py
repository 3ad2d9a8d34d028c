from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from craft_agent.agent.nodes import AgentConfig
from craft_agent.agent.offline import OfflineBackend
from craft_agent.agent.run import generate
from craft_agent.bench.agent import QUIET_WINDOW_PX, RealScore, is_single_target, run_agent_bench, write_quiet_windows
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.imagery import IngestOptions, ingest
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


def _quiet_source(root: Path) -> Path:
    """One 512 px pair: a labelled red square in the top-left window, an unlabelled blue one (a change the
    labels do not count) in the bottom-right window, the rest the same in both dates."""
    rng = np.random.default_rng(7)
    pre = rng.integers(40, 120, size=(512, 512, 3), dtype=np.uint8)
    post = pre.copy()
    mask = np.zeros((512, 512), bool)
    mask[60:140, 60:140] = True
    post[mask] = (230, 60, 40)
    post[340:420, 340:420] = (40, 60, 230)
    save_png(root / "pre" / "tile.png", pre)
    save_png(root / "post" / "tile.png", post)
    save_png(root / "mask" / "tile.png", mask)
    return root


def test_quiet_windows_are_the_crops_away_from_every_labelled_change(tmp_path: Path) -> None:
    source = _quiet_source(tmp_path / "data" / "toy")
    workspace = tmp_path / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        ingest(source, catalog, store, IngestOptions())
        windows = write_quiet_windows(catalog, store, tmp_path / "quiet")
        pair = next(catalog.iter_pairs())
        post = store.load(pair.post)
    # the top-left window holds the labelled square; the other three are quiet (the unlabelled blue one too)
    assert windows == {f"tile__{y:05d}_{x:05d}": "tile" for y, x in ((0, 256), (256, 0), (256, 256))}
    side = QUIET_WINDOW_PX
    written = np.asarray(Image.open(tmp_path / "quiet" / "post" / "tile__00256_00256.png"))
    assert np.array_equal(written, post[256 : 256 + side, 256 : 256 + side])
    assert not np.asarray(Image.open(tmp_path / "quiet" / "mask" / "tile__00000_00256.png")).any()


def test_agent_bench_scores_the_detector_on_quiet_windows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _quiet_source(data / "toy")
    report = run_agent_bench({"offline": OfflineBackend}, ClassicalMaskEngine(), pairs=0, data=data)
    toy = report["sources"]["toy"]
    assert set(toy) == {"labels", "detector", "detector_quiet"}  # labels mode has nothing to say there
    quiet = toy["detector_quiet"]
    assert quiet["pairs"] == quiet["empty_pairs"] == 3 and quiet["gt_objects"] == 0
    # the two windows where both dates are the same get nothing; the one with the blue square does
    assert quiet["empty_pairs_ok"] == round(2 / 3, 4)
    assert quiet["triplets_per_pair"] > 0
    assert quiet["precision"] is quiet["union_iou"] is quiet["instance_recall"] is None  # nothing to score against


def test_recall_is_read_against_the_budget_and_the_groups_members(tmp_path: Path) -> None:
    """Four houses built in a row: a pair that keeps one of them alone and names all four in "the buildings that
    were built" covers one by instance_recall and four with the group's members; a budget of two caps
    instance_recall at half."""
    rng = np.random.default_rng(3)
    pre = rng.integers(90, 110, size=(256, 256, 3), dtype=np.uint8)
    post = pre.copy()
    mask = np.zeros((256, 256), bool)
    for x in (20, 80, 140, 200):
        mask[100:140, x : x + 30] = True
    post[mask] = (200, 60, 50)
    source = tmp_path / "row"
    save_png(source / "pre" / "a.png", pre)
    save_png(source / "post" / "a.png", post)
    save_png(source / "mask" / "a.png", mask)
    workspace = tmp_path / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        ingest(source, catalog, store, IngestOptions())
        generate(catalog, store, OfflineBackend(), ClassicalMaskEngine(), workspace, AgentConfig(proposals="labels"))
        pair = next(catalog.iter_pairs())
        triplets = list(catalog.iter_triplets(pair_id=pair.id))
        candidates = catalog.candidates_for(pair.id)
    single = [t for t in triplets if is_single_target(t)]
    groups = [t for t in triplets if len(t.candidate_ids) == 4]
    assert len(single) == 4 and len(groups) == 1, "labels mode keeps each house and groups the four"
    every = RealScore()
    every.add_pair(pair, triplets, candidates, None)
    assert every.to_json()["instance_recall"] == every.to_json()["recall_ceiling"] == 1.0
    one_and_group = RealScore()
    one_and_group.add_pair(pair, [single[0], *groups], candidates, 2)
    figures = one_and_group.to_json()
    assert (figures["instance_recall"], figures["instance_recall_with_groups"]) == (0.25, 1.0)
    assert figures["recall_ceiling"] == 0.5 and figures["triplets_per_pair"] == 1
    # a group whose members are not known (no candidates) names no object
    unknown = RealScore()
    unknown.add_pair(pair, [single[0], *groups], [], 2)
    assert unknown.to_json()["instance_recall_with_groups"] == 0.25
