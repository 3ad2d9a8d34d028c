"""Label-guided proposals: binary masks split into objects, SECOND-style semantic maps typed by class, the agent
keeping every labelled object, and the real-data quality benchmark's metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from craft_agent.agent.nodes import AgentConfig
from craft_agent.agent.offline import OfflineBackend
from craft_agent.agent.run import generate
from craft_agent.agent.targets import DIRECTIONS, is_relational, relational_head
from craft_agent.bench.agent import score_real_catalog
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.change.instances import split_instances
from craft_agent.change.labels import SNAP_MIN_IOU, label_candidates, snap_to_image
from craft_agent.change.stage import propose_candidates
from craft_agent.errors import ConfigError
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.imagery.semantic import ClassTable
from craft_agent.masks import ClassicalMaskEngine
from craft_agent.models import ChangeType, Domain
from tests.data import save_png

SECOND_COLOURS = {
    "white": (255, 255, 255),
    "ground": (128, 128, 128),
    "low vegetation": (0, 128, 0),
    "tree": (0, 255, 0),
    "building": (128, 0, 0),
    "water": (0, 0, 255),
}


def _row_of_houses() -> np.ndarray:
    """Three 40 px houses joined by 10 px necks, an L-shaped plot, and a speck."""
    mask = np.zeros((200, 300), bool)
    mask[20:60, 20:60] = mask[35:45, 60:70] = mask[20:60, 70:110] = mask[35:45, 110:120] = mask[20:60, 120:160] = True
    mask[100:180, 20:40] = mask[160:180, 20:120] = True
    mask[5:8, 250:253] = True
    mask[60, 60] = mask[61, 61] = True  # a tail touching the first house only by a corner (8-connected)
    return mask


def test_touching_objects_are_split_at_their_necks_and_nothing_else_is() -> None:
    regions = split_instances(_row_of_houses(), min_area_px=30)
    boxes = [r.box for r in regions]
    # the three houses come apart at the necks (each keeps half of a neck), the L stays whole, the speck goes
    assert len(regions) == 4
    assert [b[0] for b in boxes[:3]] == [20, 65, 115] and all(b[1] == 20 and b[3] == 60 for b in boxes[1:3])
    assert boxes[0][3] == 62, "the corner-joined tail stays with its house"
    assert boxes[3] == (20, 100, 120, 180) and regions[3].area == 80 * 20 + 20 * 80
    # nothing of the objects is lost: the union of the pieces is the mask without the speck
    union = np.zeros((200, 300), bool)
    for region in regions:
        x0, y0, x1, y1 = region.box
        union[y0:y1, x0:x1] |= region.crop
    expected = _row_of_houses()
    expected[5:8, 250:253] = False
    assert np.array_equal(union, expected)


def test_two_squares_sharing_a_side_stay_one_object() -> None:
    mask = np.zeros((80, 120), bool)
    mask[20:60, 20:60] = mask[20:60, 60:100] = True
    assert len(split_instances(mask, 30)) == 1


def _second_source(root: Path) -> Path:
    """A SECOND-layout source (im1/ im2/ label1/ label2/) with one building that appears, trees cut down and
    ground that turned into low vegetation, on a 128 px pair."""
    rng = np.random.default_rng(0)
    pre = rng.integers(90, 140, (128, 128, 3), dtype=np.uint8)
    post = pre.copy()
    before = np.full((128, 128, 3), 255, np.uint8)
    after = before.copy()
    # building appears on ground
    before[10:40, 10:40], after[10:40, 10:40] = SECOND_COLOURS["ground"], SECOND_COLOURS["building"]
    post[10:40, 10:40] = (200, 60, 50)
    # trees cut down (tree -> ground)
    before[70:110, 10:50], after[70:110, 10:50] = SECOND_COLOURS["tree"], SECOND_COLOURS["ground"]
    pre[70:110, 10:50] = (30, 110, 40)
    # ground greened (ground -> low vegetation)
    before[60:120, 70:120], after[60:120, 70:120] = SECOND_COLOURS["ground"], SECOND_COLOURS["low vegetation"]
    post[60:120, 70:120] = (80, 150, 70)
    save_png(root / "im1" / "00001.png", pre)
    save_png(root / "im2" / "00001.png", post)
    save_png(root / "label1" / "00001.png", before)
    save_png(root / "label2" / "00001.png", after)
    return root


def test_semantic_label_maps_become_typed_categorised_changes(tmp_path: Path) -> None:
    source = _second_source(tmp_path / "second")
    with Catalog(f"sqlite:///{tmp_path / 'ws' / 'catalog.sqlite'}") as catalog:
        store = ImageStore(tmp_path / "ws")
        summary = ingest(source, catalog, store, IngestOptions())
        assert summary.ingested == 1 and summary.failed == []
        pair = next(catalog.iter_pairs())
        changes = {(c.attributes["class_before"], c.attributes["class_after"]): c for c in pair.gt_changes}
        assert set(changes) == {("ground", "building"), ("tree", "ground"), ("ground", "low vegetation")}
        assert changes["ground", "building"].change_type is ChangeType.APPEAR
        assert changes["ground", "building"].category == "building"
        assert changes["tree", "ground"].change_type is ChangeType.DISAPPEAR
        assert changes["tree", "ground"].category == "vegetation"
        assert changes["ground", "low vegetation"].change_type is ChangeType.STATE_CHANGE
        assert pair.gt_mask is not None and pair.gt_mask.area == 30 * 30 + 40 * 40 + 60 * 50
        candidates = label_candidates(pair, store.load(pair.pre), store.load(pair.post))
        assert sorted((c.change_type.value, c.category, c.area) for c in candidates) == [
            ("appear", "building", 900),
            ("disappear", "vegetation", 1600),
            ("state_change", "vegetation", 3000),
        ]
        assert all(c.source == "labels:semantic" and c.evidence["label_typed"] == 1.0 for c in candidates)


def test_s2looking_layout_gives_new_and_demolished_buildings_and_split_folders_keep_the_dataset_name(
    tmp_path: Path,
) -> None:
    """S2Looking (``Image1/ Image2/ label/ label1/ label2/`` under split folders): label1 marks the newly built
    buildings and label2 the demolished ones, as RGB maps; the dataset's name sits above the split folder."""
    rng = np.random.default_rng(1)
    split = tmp_path / "S2Looking" / "train"
    pre = rng.integers(90, 140, (128, 128, 3), dtype=np.uint8)
    post = pre.copy()
    post[10:40, 10:40] = (210, 200, 190)  # a new roof
    pre[70:100, 60:100] = (150, 60, 50)  # a roof that goes
    built, demolished = np.zeros((128, 128, 3), np.uint8), np.zeros((128, 128, 3), np.uint8)
    built[10:40, 10:40] = (255, 0, 0)
    demolished[70:100, 60:100] = (0, 0, 255)
    save_png(split / "Image1" / "1.png", pre)
    save_png(split / "Image2" / "1.png", post)
    save_png(split / "label" / "1.png", ((built.any(2) | demolished.any(2)) * 255).astype(np.uint8))
    save_png(split / "label1" / "1.png", built)
    save_png(split / "label2" / "1.png", demolished)
    # a LEVIR-CD split beside it (A/ B/ label/): 0.5 m and building labels, known from the name above "test"
    levir = tmp_path / "LEVIR-CD" / "test"
    save_png(levir / "A" / "2.png", np.flipud(pre))
    save_png(levir / "B" / "2.png", np.flipud(post))
    save_png(levir / "label" / "2.png", (np.flipud(built.any(2)) * 255).astype(np.uint8))
    with Catalog(f"sqlite:///{tmp_path / 'ws' / 'catalog.sqlite'}") as catalog:
        store = ImageStore(tmp_path / "ws")
        for source in (tmp_path / "S2Looking", tmp_path / "LEVIR-CD"):
            summary = ingest(source, catalog, store, IngestOptions())
            assert summary.ingested == 1 and summary.failed == [], summary.failed
        pairs = {p.name: p for p in catalog.iter_pairs()}
        s2, lv = pairs["train/1"], pairs["test/2"]
        assert [(c.change_type, c.category) for c in s2.gt_changes] == [
            (ChangeType.APPEAR, "building"),
            (ChangeType.DISAPPEAR, "building"),
        ]
        candidates = label_candidates(s2, store.load(s2.pre), store.load(s2.post))
        assert sorted((c.change_type.value, c.area, c.source) for c in candidates) == [
            ("appear", 900, "labels:typed"),
            ("disappear", 1200, "labels:typed"),
        ]
        assert lv.gsd_m == 0.5 and [c.category for c in lv.gt_changes] == ["building"]


def test_unknown_label_colour_names_the_file_and_the_fix(tmp_path: Path) -> None:
    source = _second_source(tmp_path / "second")
    label = np.asarray(np.full((128, 128, 3), 255, np.uint8))
    label[0:5, 0:5] = (12, 34, 56)
    save_png(source / "label2" / "00001.png", label)
    with Catalog(f"sqlite:///{tmp_path / 'ws' / 'catalog.sqlite'}") as catalog:
        summary = ingest(source, catalog, ImageStore(tmp_path / "ws"), IngestOptions())
    assert summary.ingested == 0 and len(summary.failed) == 1
    assert "(12, 34, 56)" in summary.failed[0].error and "--class-table" in summary.failed[0].error
    table = tmp_path / "classes.json"
    table.write_text(json.dumps({"classes": [{"name": "x", "colour": [1, 2, 3], "category": "spaceship"}]}))
    with pytest.raises(ConfigError, match=r"classes\.json"):
        ClassTable.load(table)


def test_labels_mode_keeps_every_labelled_object_with_its_exact_mask(tmp_path: Path) -> None:
    source = _second_source(tmp_path / "second")
    workspace = tmp_path / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        ingest(source, catalog, store, IngestOptions())
        summary = generate(catalog, store, OfflineBackend(), ClassicalMaskEngine(), workspace)
        assert summary.failed == []
        pair = next(catalog.iter_pairs())
        triplets = list(catalog.iter_triplets())
        single = [t for t in triplets if len(t.candidate_ids) == 1]
        truth = {(c.change_type, c.category, c.mask.counts) for c in pair.gt_changes}
        assert {(t.change_type, t.category, t.mask.counts) for t in single} == truth
        for triplet in triplets:
            assert triplet.provenance.backends["proposals"] == "labels"
            assert "detector" not in triplet.provenance.backends
        assert all(t.provenance.backends["masks"] == "labels" for t in single)
        score = score_real_catalog(catalog).to_json()
        assert score["precision"] == 1.0 and score["instance_recall"] == 1.0 and score["union_iou"] == 1.0
        assert score["type_accuracy"] == 1.0


def test_proposal_modes_are_chosen_per_pair_and_labels_mode_refuses_unlabelled_pairs(tmp_path: Path) -> None:
    # one labelled (SECOND layout) source and one without labels
    labelled = _second_source(tmp_path / "second")
    unlabelled = tmp_path / "plain"
    for name in ("im1", "im2"):
        (unlabelled / name).mkdir(parents=True)
        (unlabelled / name / "00001.png").write_bytes((labelled / name / "00001.png").read_bytes())
    # a different pair id: the plain pair's later image is flipped
    from PIL import Image

    Image.open(unlabelled / "im2" / "00001.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        unlabelled / "im2" / "00001.png"
    )
    with Catalog(f"sqlite:///{tmp_path / 'ws' / 'catalog.sqlite'}") as catalog:
        store = ImageStore(tmp_path / "ws")
        ingest(labelled, catalog, store, IngestOptions())
        ingest(unlabelled, catalog, store, IngestOptions())
        auto = propose_candidates(catalog, store, ClassicalMaskEngine())
        assert auto.by_mode == {"labels": 1, "detector": 1} and auto.failed == []
        forced = propose_candidates(catalog, store, ClassicalMaskEngine(), proposals="labels")
        assert forced.skipped == 1 and len(forced.failed) == 1
        assert "has no change labels" in forced.failed[0].error and "--proposals auto" in forced.failed[0].error


def _drafted_in_labels_mode(source: Path, workspace: Path) -> tuple[dict[str, Any], list[list[str]]]:
    """A source drafted in labels mode: its real-data score and each pair's expressions (lower case)."""
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        ingest(source, catalog, store, IngestOptions())
        generate(catalog, store, OfflineBackend(), ClassicalMaskEngine(), workspace, AgentConfig(proposals="labels"))
        by_pair = [
            [e.lower() for t in catalog.iter_triplets(pair_id=pair.id) for e in t.expressions]
            for pair in catalog.iter_pairs()
        ]
        return score_real_catalog(catalog).to_json(), by_pair


def test_shared_samples_in_labels_mode_meet_the_targets(shared_data: Path, tmp_path: Path) -> None:
    """LEVIR-CD crops with their binary building labels: every labelled house becomes one exact triplet."""
    score, _ = _drafted_in_labels_mode(shared_data / "levir_cd_256", tmp_path / "ws")
    assert score["pairs"] == 7 and score["gt_objects"] > 0
    assert score["precision"] >= 0.98 and score["instance_recall"] >= 0.95 and score["union_iou"] >= 0.9
    assert score["empty_pairs"] == 1 and score["empty_pairs_ok"] == 1.0


def test_dense_new_streets_name_houses_beside_named_neighbours(shared_data: Path, tmp_path: Path) -> None:
    """The LEVIR-CD tile where a neighbourhood was built along curved streets: many houses have no colour, rank,
    row or edge of their own, and are named beside a neighbour instead ("the new house just east of ...")."""
    score, by_pair = _drafted_in_labels_mode(shared_data / "levir_cd_1024", tmp_path / "ws")
    sides = "|".join(sorted(DIRECTIONS, key=len, reverse=True))
    related = counted = 0
    for expressions in by_pair:
        assert len(set(expressions)) == len(expressions), "one target per expression within a pair"
        # every anchor is another triplet's expression of the same pair, in full or with its change said as "new"
        names = set(expressions) | {relational_head(e, t) for e in expressions if " that " in e for t in ChangeType}
        for expression in (e for e in expressions if is_relational(e, Domain.RS)):
            anchor = re.split(rf" (?:just )?(?:{sides}) of ", expression, maxsplit=1)[1]
            assert anchor in names and not is_relational(anchor, Domain.RS), expression
            related += 1
            counted += expression.startswith(("the second ", "the third "))
    assert related >= 20 and counted >= 5, (related, counted)
    assert score["precision"] == 1.0 and score["instance_recall"] >= 0.9


def test_snapping_refines_labels_with_the_mask_engine_and_keeps_them_where_it_strays(tmp_path: Path) -> None:
    source = _second_source(tmp_path / "second")
    with Catalog(f"sqlite:///{tmp_path / 'ws' / 'catalog.sqlite'}") as catalog:
        store = ImageStore(tmp_path / "ws")
        ingest(source, catalog, store, IngestOptions())
        pair = next(catalog.iter_pairs())
        pre, post = store.load(pair.pre), store.load(pair.post)
        labelled = label_candidates(pair, pre, post)
        snapped = snap_to_image(labelled, ClassicalMaskEngine(), pair, pre, post)
    assert len(snapped) == len(labelled)
    for before, after in zip(labelled, snapped, strict=True):
        assert before.mask is not None and after.mask is not None
        agreement = after.scores["snap_iou"]
        assert 0.0 <= agreement <= 1.0
        if after.source.endswith("+snap:classical"):
            assert agreement >= SNAP_MIN_IOU and after.mask.iou(before.mask) >= SNAP_MIN_IOU
        else:
            assert after.mask == before.mask  # the engine strayed: the label is kept
        assert (after.change_type, after.category) == (before.change_type, before.category)
