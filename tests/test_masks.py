from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from craft_agent.change import create_detector
from craft_agent.errors import ConfigError
from craft_agent.masks import ClassicalMaskEngine, MaskRequest, create_mask_engine, segment_candidates
from craft_agent.masks.base import MaskScore, clean_mask, combine_dates
from craft_agent.masks.sam import EmbeddingCache, SamMaskEngine
from craft_agent.masks.tiny_sam import save_checkpoint, tiny_sam
from craft_agent.models import BBox, ChangeType
from craft_agent.settings import Settings
from craft_agent.synthetic import generate_scene


def _scene_request(change_type: ChangeType, seed_mask: np.ndarray, pre: np.ndarray, post: np.ndarray) -> MaskRequest:
    ys, xs = np.nonzero(seed_mask)
    box = BBox(x0=int(xs.min()), y0=int(ys.min()), x1=int(xs.max()) + 1, y1=int(ys.max()) + 1)
    return MaskRequest(pre=pre, post=post, pre_key="a", post_key="b", change_type=change_type, box=box, seed=seed_mask)


def test_classical_engine_recovers_objects_from_a_rough_seed() -> None:
    """Seeds are the true masks dilated by 3 px; GrabCut must pull them back onto the object outline."""
    import cv2

    ious_seed, ious_cut = [], []
    engine = ClassicalMaskEngine()
    for seed in range(3):
        scene = generate_scene(seed, size=256)
        for change in scene.changes:
            if change.mask.sum() < 150:
                continue
            rough = cv2.dilate(change.mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
            result = engine.segment(_scene_request(ChangeType(change.change_type), rough, scene.pre, scene.post))
            truth = change.mask
            ious_seed.append((rough & truth).sum() / (rough | truth).sum())
            cut = result.mask.to_array()
            ious_cut.append((cut & truth).sum() / (cut | truth).sum())
            assert (
                result.dates
                == {"appear": ["post"], "disappear": ["pre"], "state_change": ["pre", "post"]}[change.change_type]
            )
            assert 0 <= result.scores[MaskScore.AGREEMENT] <= 1 and 0 <= result.scores[MaskScore.STABILITY] <= 1
    assert len(ious_cut) >= 5
    # measured when written: seeds about 0.55, cuts about 0.75 mean IoU
    assert np.mean(ious_cut) >= 0.65
    assert np.mean(ious_cut) > np.mean(ious_seed) + 0.05


def test_classical_pipeline_iou_on_generated_scenes() -> None:
    engine = ClassicalMaskEngine()
    detector = create_detector("classical", "rs")
    best = []
    for seed in range(3):
        scene = generate_scene(100 + seed, size=256)
        result = detector.detect("p", scene.pre, scene.post)
        results = segment_candidates(engine, result.candidates, scene.pre, scene.post, "a", "b")
        masks = [m.mask.to_array() for m in results]
        for change in scene.changes:
            best.append(max(((m & change.mask).sum() / (m | change.mask).sum() for m in masks), default=0.0))
    assert np.mean(best) >= 0.7  # measured about 0.85 when written


def test_clean_mask_and_combination() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:25, 5:25] = True
    mask[10:13, 10:13] = False  # small hole
    mask[35, 35] = True  # speck
    cleaned = clean_mask(mask, min_area=4, max_hole=16)
    assert cleaned[11, 11] and not cleaned[35, 35] and cleaned.sum() == 400
    a = np.zeros((10, 10), bool)
    a[:, :7] = True
    b = np.zeros((10, 10), bool)
    b[:, 2:] = True
    assert combine_dates([a, b]).sum() == 50  # agree on half the union: intersection
    c = np.zeros((10, 10), bool)
    c[:, 5:] = True
    d = np.zeros((10, 10), bool)
    d[:, :4] = True
    assert combine_dates([c, d]).sum() == 90  # barely overlap: union


def test_sam_engine_real_predictor_path_and_embedding_cache(tmp_path: Path) -> None:
    scene = generate_scene(5, size=256)
    change = next(c for c in scene.changes if c.change_type == "appear")
    cache = EmbeddingCache(tmp_path / "cache")
    engine = SamMaskEngine(tiny_sam(), model_key="tiny:test", cache=cache)
    request = _scene_request(ChangeType.APPEAR, change.mask, scene.pre, scene.post)
    request.positive_points = [(int(np.nonzero(change.mask)[1].mean()), int(np.nonzero(change.mask)[0].mean()))]
    first = engine.segment(request)
    assert first.mask.size == (256, 256) and first.dates == ["post"]
    assert engine.encoder_runs == 1 and cache.misses == 1
    assert MaskScore.PREDICTED_IOU in first.scores
    # the same image again: embedding taken from memory, no encoder run
    engine.segment(request)
    assert engine.encoder_runs == 1
    # a new engine (a re-run): embedding read from disk, identical mask
    again = SamMaskEngine(tiny_sam(), model_key="tiny:test", cache=cache)
    second = again.segment(request)
    assert again.encoder_runs == 0 and cache.hits == 1
    assert np.array_equal(second.mask, first.mask)
    # a state change prompts both dates: the earlier image is encoded once more
    both = again.segment(_scene_request(ChangeType.STATE_CHANGE, change.mask, scene.pre, scene.post))
    assert both.dates == ["pre", "post"] and again.encoder_runs == 1
    # another model key never reuses these embeddings
    other = SamMaskEngine(tiny_sam(), model_key="tiny:other", cache=cache)
    other.segment(request)
    assert other.encoder_runs == 1


def test_sam_engine_tiles_large_images_around_the_target() -> None:
    scene = generate_scene(7, size=512)
    change = scene.changes[0]
    engine = SamMaskEngine(tiny_sam(), model_key="tiny:tiles", tile_size=256)
    result = engine.segment(_scene_request(ChangeType(change.change_type), change.mask, scene.pre, scene.post))
    assert result.mask.size == (512, 512)
    assert engine.predictor.original_size == (256, 256)  # the encoder saw a 256 px window, not the scene


def test_sam_checkpoint_loading_through_the_registry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        SamMaskEngine.from_checkpoint("vit_b", tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="unknown SAM model type"):
        SamMaskEngine.from_checkpoint("vit_q", tmp_path / "missing.pth")
    # a state dict of another architecture is refused with a clear error, by the real loading code
    bad = save_checkpoint(tmp_path / "tiny.pth")
    with pytest.raises(ConfigError, match="is not a vit_b segment-anything checkpoint"):
        SamMaskEngine.from_checkpoint("vit_b", bad)


def test_engine_registry_defaults_to_classical_offline(tmp_path: Path) -> None:
    assert create_mask_engine(Settings(workspace=tmp_path)).name == "classical"
    with pytest.raises(ConfigError, match="needs a checkpoint"):
        create_mask_engine(Settings(workspace=tmp_path), "sam")
    with pytest.raises(ConfigError, match="unknown mask engine"):
        create_mask_engine(Settings(workspace=tmp_path), "paint")


def test_classical_masks_do_not_depend_on_earlier_calls() -> None:
    import cv2

    scene = generate_scene(21, size=256)
    change = max(scene.changes, key=lambda c: int(c.mask.sum()))
    dilated = cv2.dilate(change.mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    request = _scene_request(ChangeType(change.change_type), dilated, scene.pre, scene.post)
    engine = ClassicalMaskEngine()
    first = engine.segment(request).mask
    cv2.setRNGSeed(12345)  # disturb OpenCV's global generator as other work in the process would
    for _ in range(3):
        cv2.kmeans(np.random.default_rng(0).random((50, 3), dtype=np.float32), 3, None, (3, 10, 1.0), 1, 2)
    assert engine.segment(request).mask == first
