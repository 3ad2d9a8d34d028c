"""The referring-segmentation metrics against cases computed by hand (empty targets included)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from craft_agent.metrics import ReferringScores, sample_iou


def mask(*rows: str) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows])


def test_sample_iou_follows_the_published_conventions() -> None:
    empty = mask("....", "....")
    two = mask("##..", "....")
    three = mask("###.", "....")
    assert sample_iou(empty, empty) == 1.0  # both empty
    assert sample_iou(two, empty) == 0.0  # nothing to find, something found
    assert sample_iou(empty, two) == 0.0
    assert sample_iou(two, three) == pytest.approx(2 / (3 + 1e-6))  # I / (U + 1e-6)
    assert sample_iou(three, three) == pytest.approx(3 / (3 + 1e-6)) and sample_iou(three, three) < 1.0


def test_referring_scores_by_hand() -> None:
    scores = ReferringScores()
    # 1: IoU 2/4; 2: IoU 1 (almost); 3: empty target answered empty -> 1; 4: empty target, 2 px found -> 0;
    # 5: a target of 2 px answered with nothing -> 0
    cases = [
        (mask("##..", "...."), mask("####", "....")),
        (mask("....", "##.."), mask("....", "##..")),
        (mask("....", "...."), mask("....", "....")),
        (mask("#...", "#..."), mask("....", "....")),
        (mask("....", "...."), mask("..##", "....")),
    ]
    ious = [scores.add(prediction, target) for prediction, target in cases]
    assert ious == pytest.approx([2 / (4 + 1e-6), 2 / (2 + 1e-6), 1.0, 0.0, 0.0])
    assert scores.miou == pytest.approx((0.5 + 1 + 1 + 0 + 0) / 5, abs=1e-6)
    # oIoU: intersections 2 + 2 + 0 + 0 + 0 over unions 4 + 2 + 0 + 2 + 2
    assert scores.oiou == pytest.approx(4 / 10)
    # Pr@t counts the empty sample answered empty; the smoothing puts 2/(4+1e-6) just under 0.5, as in the
    # published code, and 2/(2+1e-6) over every threshold
    assert scores.precision_at(0.5) == scores.precision_at(0.9) == pytest.approx(2 / 5)
    assert scores.n_acc == pytest.approx(1 / 2) and scores.t_acc == pytest.approx(2 / 3)
    report = scores.as_json()
    assert report["samples"] == 5 and report["ciou"] == report["oiou"] and report["giou"] == report["miou"]
    assert report["precision_at"] == {"0.5": 0.4, "0.6": 0.4, "0.7": 0.4, "0.8": 0.4, "0.9": 0.4}


def test_all_empty_and_no_samples() -> None:
    scores = ReferringScores()
    scores.add(mask("..", ".."), mask("..", ".."))
    assert (scores.miou, scores.oiou, scores.n_acc, scores.t_acc) == (1.0, 1.0, 1.0, None)
    nothing = ReferringScores()
    assert nothing.as_json()["samples"] == 0 and nothing.miou == 0.0 and nothing.n_acc is None
    with pytest.raises(ValueError, match="differ in shape"):
        nothing.add(np.zeros((2, 2), bool), np.zeros((3, 2), bool))


def test_predictions_are_scored_against_an_export(tmp_path: Path) -> None:
    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.data import MTRSDataset
    from craft_agent.errors import ConfigError
    from craft_agent.evaluate import score_predictions
    from craft_agent.export import export_dataset
    from tests.data import audit_through_the_catalog, draft_triplets_from_truth

    workspace = tmp_path / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        audit_through_the_catalog(catalog, draft_triplets_from_truth(catalog, store, tmp_path / "src", pairs=3))
        export_dataset(catalog, store, tmp_path / "export", ["mtrefseg"])
    samples = list(MTRSDataset(tmp_path / "export", "mtrefseg"))
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    # perfect answers for every expression of every sample but the first, whose expressions have none
    expressions = sum(len(s["expressions"]) for s in samples)
    for sample in samples[1:]:
        cv2.imwrite(str(predictions / f"{sample['sample_id']}.png"), sample["mask"].astype(np.uint8) * 255)
    report = score_predictions(predictions, tmp_path / "export")
    first = samples[0]
    assert report["samples"] == expressions and report["missing"] == len(first["expressions"])
    perfect = sum(len(s["expressions"]) for s in samples[1:])
    expected = (perfect + (len(first["expressions"]) if not first["mask"].any() else 0)) / expressions
    assert report["miou"] == pytest.approx(expected, abs=1e-4)
    # one expression's own file wins over the sample-wide one; a wrongly sized one is refused by name
    cv2.imwrite(str(predictions / f"{first['sample_id']}_0.png"), np.zeros((5, 5), np.uint8))
    with pytest.raises(ConfigError, match=f"{first['sample_id']}_0.png is 5x5"):
        score_predictions(predictions, tmp_path / "export")


def test_a_dataloader_batches_samples_with_the_collate_function(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.data import MTRSDataset, collate_samples
    from craft_agent.export import export_dataset
    from tests.data import audit_through_the_catalog, draft_triplets_from_truth

    workspace = tmp_path / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        audit_through_the_catalog(catalog, draft_triplets_from_truth(catalog, store, tmp_path / "src", pairs=2))
        export_dataset(catalog, store, tmp_path / "export", ["mtrefseg"])
    dataset = MTRSDataset(tmp_path / "export", "mtrefseg")
    batches = list(DataLoader(dataset, batch_size=2, collate_fn=collate_samples))
    assert sum(len(b["sample_id"]) for b in batches) == len(dataset) >= 3
    first = batches[0]
    assert first["image_a"].shape[0] == first["mask"].shape[0] == len(first["expressions"]) == 2
    assert first["image_a"].shape[-1] == 3 and str(first["mask"].dtype) == "torch.bool"
    assert all(isinstance(e, list) and all(isinstance(t, str) for t in e) for e in first["expressions"])
