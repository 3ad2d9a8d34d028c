"""The learned change proposer: training, resume, checkpoint loading, detection, CLI and the LOFO bench."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from craft_agent.bench.change import deal_folds, family_of, is_window, run_change_bench
from craft_agent.bench.vision import pairs_from_source, run_vision_bench
from craft_agent.catalog import Catalog
from craft_agent.change import create_detector, default_detector
from craft_agent.change.learned import (
    MODEL_GSD_M,
    SiameseChangeNet,
    load_change_model,
    normalise_image,
    predict_probability,
)
from craft_agent.change.scale import beyond_resolution, gsd_scale
from craft_agent.errors import ConfigError
from craft_agent.masks import ClassicalMaskEngine
from craft_agent.metrics import PixelCounts
from craft_agent.models import ChangeType
from craft_agent.settings import Settings
from craft_agent.synthetic import generate_scene, write_examples
from craft_agent.train.change import (
    ChangeTrainingSummary,
    TrainingPair,
    load_change_data,
    split_pairs,
    spread_over_sources,
    train_change_model,
)
from tests.data import make_folder_source, save_png, scene
from tests.test_cli import craft


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("learned") / "examples"
    write_examples(root, pairs=4, seed=0, size=128)
    return root


@pytest.fixture(scope="module")
def tiny_run(examples: Path) -> tuple[Path, ChangeTrainingSummary]:
    """Thirty steps on four generated scenes: enough to exercise every file a run writes."""
    out = examples.parent / "run"
    summary = train_change_model([examples], out, steps=30, crop=64, batch=4, seed=0)
    return out, summary


def test_training_writes_checkpoint_log_and_pictures(tiny_run: tuple[Path, ChangeTrainingSummary]) -> None:
    out, summary = tiny_run
    assert summary.step == 30 and summary.steps_this_run == 30 and not summary.resumed
    assert summary.train_pairs == 4 and summary.val_pairs == 0 and summary.skipped_without_mask == 0
    assert summary.predictions_from == "training" and summary.val_pixel_f1 is None
    assert summary.sources == ["examples"] and summary.device == "cpu"
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [10, 20, 30]
    assert all(line["loss"] > 0 and line["seconds"] >= 0 for line in lines)
    import cv2

    picture = cv2.imread(str(out / "predictions.png"))
    assert picture.shape == (4 * 256, 4 * 256, 3)  # four pairs as rows of pre, post, truth, prediction
    saved = torch.load(out / "change.pt", weights_only=True)
    assert saved["step"] == 30 and saved["threshold"] == 0.5 and saved["summary"]["step"] == 30
    assert saved["sources"] == ["examples"]


def test_resume_continues_the_step_count(tiny_run: tuple[Path, ChangeTrainingSummary], tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(tiny_run[0], out)
    with pytest.raises(ConfigError, match="already exists"):
        train_change_model([tiny_run[0].parent / "examples"], out, steps=5)
    summary = train_change_model([tiny_run[0].parent / "examples"], out, steps=5, resume=True)
    assert summary.step == 35 and summary.steps_this_run == 5 and summary.resumed
    assert torch.load(out / "change.pt", weights_only=True)["step"] == 35
    with pytest.raises(ConfigError, match="does not exist"):
        train_change_model([tiny_run[0].parent / "examples"], tmp_path / "new", steps=5, resume=True)


def test_training_needs_a_budget_and_masks(examples: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="budget"):
        train_change_model([examples], tmp_path / "a")
    no_masks = tmp_path / "no_masks"
    make_folder_source(no_masks, pairs=2)
    shutil.rmtree(no_masks / "label")
    with pytest.raises(ConfigError, match=r"no pair with a change mask .*2 without one"):
        train_change_model([no_masks], tmp_path / "b", steps=1)


def test_held_out_split_is_seeded_by_pair() -> None:
    assert split_pairs(4, 0.1, 0) == ([0, 1, 2, 3], [])
    train, val = split_pairs(21, 0.1, 0)
    assert len(val) == 2 and sorted(train + val) == list(range(21))
    assert split_pairs(21, 0.1, 0) == (train, val) and split_pairs(21, 0.1, 1) != (train, val)
    assert split_pairs(5, 0.1, 0)[1] != [] and split_pairs(3, 0.0, 0)[1] == []


def test_pictures_take_pairs_from_every_source() -> None:
    image, mask = np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), bool)
    sizes = (("a", 3), ("b", 1), ("c", 2))
    pairs = [TrainingPair(f"{source}{i}", source, image, image, mask) for source, n in sizes for i in range(n)]
    assert [p.name for p in spread_over_sources(pairs, 4)] == ["a0", "b0", "c0", "a1"]
    assert len(spread_over_sources(pairs, 10)) == 6


def test_learned_detector_returns_typed_candidates_with_stable_ids(
    tiny_run: tuple[Path, ChangeTrainingSummary],
) -> None:
    checkpoint = tiny_run[0] / "change.pt"
    generated = generate_scene(7, size=160, domain="rs")
    pre, post = generated.pre[:150, :], generated.post[:150, :]  # 150 x 160: not a multiple of 16
    detector = create_detector("learned", "rs", checkpoint)
    assert detector.name == "learned"
    result = detector.detect("pair-a", pre, post)
    assert result.evidence.shape == (150, 160) and result.evidence.dtype == np.float32
    assert float(result.evidence.min()) >= 0.0 and float(result.evidence.max()) <= 1.0
    assert result.threshold == 0.5 and result.changed.dtype == bool
    assert np.array_equal(result.changed & ~(result.evidence > 0.5), np.zeros_like(result.changed))
    assert result.candidates, "a trained model finds something in a generated scene"
    union = np.zeros(result.changed.shape, dtype=bool)
    for candidate in result.candidates:
        mask = candidate.mask.to_array()
        union |= mask
        assert candidate.source == "learned:region" and candidate.pair_id == "pair-a"
        assert isinstance(candidate.change_type, ChangeType)
        assert candidate.scores["confidence"] == candidate.evidence["mean_probability"] > 0.5
        assert candidate.area == int(mask.sum())
        assert abs(candidate.scores["confidence"] - float(result.evidence[mask].mean())) < 1e-3
    assert np.array_equal(union, result.changed)  # the objects partition the changed map
    again = create_detector("learned", "rs", checkpoint).detect("pair-a", pre, post)
    assert [c.id for c in again.candidates] == [c.id for c in result.candidates]
    other = detector.detect("pair-b", pre, post)
    assert not {c.id for c in other.candidates} & {c.id for c in result.candidates}


def test_pairs_of_known_gsd_are_seen_at_the_model_resolution(tmp_path: Path) -> None:
    """A 0.3 m WHU-CD house is 1.7 times as wide in pixels as a 0.5 m LEVIR-CD one: the model trains and predicts
    at one resolution, and a pair of unknown GSD or of another regime (10 m Sentinel-2) stays as it is."""
    assert gsd_scale(0.3, 0.5) == pytest.approx(0.6) and gsd_scale(0.5, 0.5) == 1.0
    assert gsd_scale(None, 0.5) == gsd_scale(0.3, None) == gsd_scale(10.0, 0.5) == 1.0
    pre, post, mask = scene(0, size=96)
    pair = TrainingPair("p", "whu_cd", pre, post, mask, gsd_m=0.25)
    half = pair.at_resolution(0.5)
    assert half.pre.shape == (48, 48, 3) and half.mask.shape == (48, 48) and half.mask.dtype == bool
    assert half.gsd_m == 0.5 and half.pre_normalised.shape == (3, 48, 48)
    assert abs(int(half.mask.sum()) * 4 - int(mask.sum())) <= 0.15 * mask.sum()  # the same square, in metres
    assert TrainingPair("q", "dsifn", pre, post, mask).at_resolution(0.5).pre is pre  # unknown GSD: untouched
    # a source named after WHU-CD is known to be 0.3 m: the run trains on it at the model's 0.5 m
    source = make_folder_source(tmp_path / "whu_cd_demo", pairs=2)
    out = tmp_path / "run"
    summary = train_change_model([source], out, steps=2, crop=32, batch=2, seed=0)
    assert summary.config.gsd_m == MODEL_GSD_M
    model = load_change_model(out / "change.pt")
    assert model.gsd_m == MODEL_GSD_M
    detector = create_detector("learned", "rs", out / "change.pt")
    resampled = detector.detect("pair", pre, post, gsd_m=0.3).evidence
    native = detector.detect("pair", pre, post).evidence
    assert resampled.shape == native.shape == (96, 96)  # objects are found at the pair's own resolution
    expected = predict_probability(model.net, pre, post, model.device, scale=0.6)
    assert np.array_equal(resampled, expected) and not np.allclose(resampled, native)
    # a checkpoint from before the model GSD saw every pair at its own resolution, and a resumed run keeps that
    saved = torch.load(out / "change.pt", weights_only=True)
    del saved["gsd_m"], saved["config"]["gsd_m"]
    torch.save(saved, out / "change.pt")
    assert load_change_model(out / "change.pt").gsd_m is None
    assert train_change_model([source], out, steps=1, resume=True).config.gsd_m is None


def test_large_images_are_predicted_in_windows() -> None:
    torch.manual_seed(0)
    net = SiameseChangeNet(base=4, levels=2)
    rng = np.random.default_rng(0)
    pre = rng.integers(0, 255, size=(70, 1100, 3), dtype=np.uint8)
    probability = predict_probability(net, pre, pre.copy(), torch.device("cpu"))  # two windows across
    assert probability.shape == (70, 1100) and probability.dtype == np.float32
    assert np.isfinite(probability).all() and 0 < probability.min() <= probability.max() < 1
    padded = torch.from_numpy(np.pad(normalise_image(pre), ((0, 0), (0, 10), (0, 4)), mode="reflect"))[None]
    with torch.no_grad():
        one_pass = torch.sigmoid(net(padded, padded))[0, 0, :70, :1100].numpy()
    # away from the windows' edges, the averaged windows equal one pass over the whole image
    assert np.abs(probability[:, 200:900] - one_pass[:, 200:900]).max() < 1e-4


def test_learned_needs_a_checkpoint_and_refuses_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        create_detector("learned", "rs")
    assert "--checkpoint RUN/change.pt" in (missing.value.hint or "")
    with pytest.raises(ConfigError, match="does not exist"):
        load_change_model(tmp_path / "nowhere.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match=r"corrupt\.pt cannot be read") as damaged:
        load_change_model(corrupt)
    assert "craft-agent train --stage change" in (damaged.value.hint or "")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ConfigError, match=r"foreign\.pt is not a craft-agent change checkpoint"):
        load_change_model(foreign)
    mismatched = tmp_path / "mismatched.pt"
    torch.save(
        {
            "format": "craft-agent/change-model/1",
            "architecture": {"base": 8, "levels": 4},
            "state_dict": SiameseChangeNet(base=16).state_dict(),
        },
        mismatched,
    )
    with pytest.raises(ConfigError, match="do not fit the network"):
        load_change_model(mismatched)


def test_an_unusable_checkpoint_stops_generate_before_any_pair_is_drafted(tmp_path: Path) -> None:
    """Even in labels mode, where the detector would not run: the user asked for it, and finding out after
    every pair was drafted (LLM calls spent) and then failed is worse."""
    source = make_folder_source(tmp_path / "LEVIR-CD", pairs=2)
    workspace = tmp_path / "ws"
    assert craft("ingest", str(source), "--workspace", str(workspace), "--json").returncode == 0
    missing = tmp_path / "nowhere" / "change.pt"
    result = craft("generate", "--workspace", str(workspace), "--detector", "learned", "--checkpoint", str(missing))
    assert result.returncode == 2 and f"change checkpoint {missing} does not exist" in result.stderr
    without = craft("generate", "--workspace", str(workspace), "--detector", "learned")
    assert without.returncode == 2 and "needs a checkpoint" in without.stderr
    with Catalog.from_settings(Settings(workspace=workspace)) as catalog:
        assert list(catalog.iter_triplets()) == [] and catalog.runs("generate") == []


def test_default_detector_follows_the_settings(tmp_path: Path) -> None:
    from craft_agent.pipeline import DraftOptions

    assert default_detector(Settings(workspace=tmp_path)) == ("classical", None)
    checkpoint = tmp_path / "change.pt"
    configured = Settings(workspace=tmp_path, change_checkpoint=checkpoint)
    assert default_detector(configured) == ("learned", checkpoint)
    # the flows' options resolve it the same way: unset follows the workspace, an explicit choice wins
    resolved = DraftOptions().for_workspace(configured)
    assert (resolved.detector, resolved.checkpoint) == ("learned", str(checkpoint))
    assert DraftOptions(detector="classical").for_workspace(configured).checkpoint is None
    assert DraftOptions().for_workspace(Settings(workspace=tmp_path)).detector == "classical"
    given = DraftOptions(checkpoint=str(tmp_path / "other.pt")).for_workspace(Settings(workspace=tmp_path))
    assert (given.detector, given.checkpoint) == ("learned", str(tmp_path / "other.pt"))


def test_a_flow_task_drafts_with_the_workspace_detector(
    tiny_run: tuple[Path, ChangeTrainingSummary], examples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint set in the workspace's settings is the default detector of the flows' per-pair task too, as
    it is of ``generate``, and the triplets' provenance says which detector made them."""
    from craft_agent.pipeline import DraftOptions, draft_pair

    workspace = tmp_path / "ws"
    assert craft("ingest", str(examples), "--workspace", str(workspace), "--json").returncode == 0
    monkeypatch.setenv("CRAFT_CHANGE_CHECKPOINT", str(tiny_run[0] / "change.pt"))
    with Catalog.from_settings(Settings(workspace=workspace)) as catalog:
        pair_id = next(iter(catalog.iter_pairs())).id
    options = DraftOptions(llm="offline", masks="classical", proposals="detector")
    assert draft_pair(str(workspace), pair_id, options).failed == []
    with Catalog.from_settings(Settings(workspace=workspace)) as catalog:
        detectors = {t.provenance.backends.get("detector") for t in catalog.iter_triplets() if not t.is_no_target}
        sources = {c.source.split(":")[0] for c in catalog.candidates_for(pair_id)}
    assert detectors == {"learned"} and sources == {"learned"}


def test_pairs_too_coarse_for_the_checkpoint_are_named_in_the_summaries(
    tiny_run: tuple[Path, ChangeTrainingSummary], examples: Path, tmp_path: Path
) -> None:
    """A 10 m Sentinel-2 pair is twenty times the 0.5 m a checkpoint learned: the detector sees it at its own
    resolution and finds nothing it was trained for. The run still drafts it, and says so."""
    checkpoint = str(tiny_run[0] / "change.pt")
    assert beyond_resolution(10.0, 0.5) and not beyond_resolution(0.3, 0.5) and not beyond_resolution(None, 0.5)
    for gsd, expected in (("10", 10.0), ("0.5", None)):
        workspace = tmp_path / f"ws-{gsd}"
        assert craft("ingest", str(examples), "--workspace", str(workspace), "--gsd", gsd).returncode == 0
        learned = ("--workspace", str(workspace), "--detector", "learned", "--checkpoint", checkpoint)
        stages = [craft(stage, *learned, "--proposals", "detector", "--json") for stage in ("candidates", "generate")]
        for done in stages:
            assert done.returncode == 0, done.stderr
            beyond = json.loads(done.stdout)["beyond_model_resolution"]
            if expected is None:
                assert beyond == {} and "warning" not in done.stderr
            else:
                assert len(beyond) == 4 and set(beyond.values()) == {expected}
                assert "4 pair(s) at 10 m per pixel" in done.stderr and "--detector classical" in done.stderr


def test_a_trained_model_beats_chance_on_unseen_pairs(tmp_path: Path) -> None:
    """Squares that appear on noise are trivially learnable: a short run must find them on new pairs."""
    make_folder_source(tmp_path / "squares", pairs=8)
    summary = train_change_model([tmp_path / "squares"], tmp_path / "run", steps=40, crop=64, batch=4, seed=0)
    assert summary.val_pairs == 1 and summary.val_pixel_f1 is not None
    model = load_change_model(tmp_path / "run" / "change.pt", "cpu")
    counts = PixelCounts()
    for seed in range(100, 104):
        pre, post, mask = scene(seed)
        counts.add(predict_probability(model.net, pre, post, model.device) > model.threshold, mask)
    chance = 2 * (1 / 16) / (1 + 1 / 16)  # F1 of calling everything changed, for a square of 1/16 of the image
    assert counts.f1 > 0.8 > 4 * chance, counts.f1


def test_change_bench_leaves_one_family_out(tmp_path: Path) -> None:
    assert family_of("levir_cd_256") == family_of("levir_cd_1024") == "levir" and family_of("oscd") == "oscd"
    data = tmp_path / "data"
    make_folder_source(data / "alpha_cd_64", pairs=2, pre="pre", post="post", masks="mask")
    make_folder_source(data / "alpha_cd_65", pairs=1, pre="pre", post="post", masks="mask")
    make_folder_source(data / "beta_cd", pairs=2, pre="pre", post="post", masks="mask")
    report = run_change_bench(data, minutes=None, steps=2, device="cpu", crop=64, batch=2)
    assert set(report["folds"]) == {"alpha", "beta"}
    alpha = report["folds"]["alpha"]
    assert alpha["train_sources"] == ["beta_cd"] and alpha["steps"] == 2 and alpha["train_pairs"] == 2
    assert alpha["held_out"] == ["alpha_cd_64/p0", "alpha_cd_64/p1", "alpha_cd_65/p0"]
    assert report["folds"]["beta"]["train_sources"] == ["alpha_cd_64", "alpha_cd_65"]
    metrics = report["sources"]["alpha_cd_64"]
    assert metrics["pairs"] == 2 and 0 <= metrics["pixel_f1"] <= 1 and metrics["classical_pixel_f1"] > 0.9
    assert "changed map" in report["config"]["scoring"]


def test_change_bench_holds_out_pairs_and_keeps_windows_with_their_tile(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_folder_source(data / "alpha_cd", pairs=4, pre="pre", post="post", masks="mask")
    make_folder_source(data / "beta_cd", pairs=2, pre="pre", post="post", masks="mask")
    # a window of alpha's p0 stored as another source of the same family: it must share p0's fold
    crop = data / "alpha_small"
    for folder in ("pre", "post", "mask"):
        tile = np.asarray(Image.open(data / "alpha_cd" / folder / "p0.png"))
        save_png(crop / folder / "w.png", tile[16:80, 32:96])
    sources = {folder.name: pairs_from_source(folder, tmp_path / "images")[0] for folder in sorted(data.iterdir())}
    assert is_window(sources["alpha_small"][0].pre, sources["alpha_cd"][0].pre)
    assert not is_window(sources["alpha_small"][0].pre, sources["alpha_cd"][1].pre)
    dealt = deal_folds(sources, 3, seed=0)
    assert sorted(key for fold in dealt for key in fold) == sorted(f"{n}/{p.name}" for n in sources for p in sources[n])
    assert [("alpha_cd/p0" in fold) for fold in dealt] == [("alpha_small/w" in fold) for fold in dealt]
    assert all(any(k.startswith("alpha_cd/") for k in fold) for fold in dealt)

    runs = tmp_path / "runs"
    report = run_change_bench(
        data, minutes=None, steps=2, device="cpu", crop=64, batch=2, runs=runs, protocol="pairs", folds=3
    )
    assert set(report["folds"]) == {"fold-0", "fold-1", "fold-2"}
    held = [set(fold["held_out"]) for fold in report["folds"].values()]
    for label, fold in report["folds"].items():  # each run says which pairs it never saw
        assert json.loads((runs / label / "held_out.json").read_text()) == {
            "protocol": "pairs",
            "held_out": fold["held_out"],
        }
    assert set().union(*held) == {f"{n}/{p.name}" for n in sources for p in sources[n]}
    for fold in report["folds"].values():
        # every source trains, without the fold's own pairs
        assert fold["train_sources"] == sorted(sources) and fold["train_pairs"] == 7 - len(fold["held_out"])
    assert report["sources"]["alpha_cd"]["pairs"] == 4 and report["sources"]["beta_cd"]["classical_pixel_f1"] > 0.9
    with pytest.raises(ConfigError, match="--folds 9"):
        run_change_bench(data, steps=1, device="cpu", protocol="pairs", folds=9)


def test_vision_bench_with_the_learned_detector(tiny_run: tuple[Path, ChangeTrainingSummary], tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_folder_source(data / "toy", pairs=2, pre="pre", post="post", masks="mask")
    checkpoint = tiny_run[0] / "change.pt"
    report = run_vision_bench(data, ClassicalMaskEngine(), synthetic_count=0, detector="learned", checkpoint=checkpoint)
    assert report["detector"] == "learned" and report["checkpoint"] == str(checkpoint)
    assert report["sources"]["toy"]["pairs"] == 2


def test_train_cli(examples: Path, tmp_path: Path) -> None:
    arguments = ["--data", str(examples), "--out", str(tmp_path / "run"), "--steps", "3", "--crop", "64"]
    result = craft("train", "--stage", "change", *arguments, "--batch", "2", "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["step"] == 3 and summary["train_pairs"] == 4 and (tmp_path / "run" / "change.pt").is_file()
    refused = craft("train", "--stage", "caption", "--data", str(examples), "--out", str(tmp_path / "r"), "--json")
    assert refused.returncode == 2 and "caption" in json.loads(refused.stdout)["error"]


def test_bench_vision_cli_learned_needs_a_checkpoint(tmp_path: Path) -> None:
    result = craft("bench", "vision", "--out", str(tmp_path / "r.json"), "--detector", "learned", "--json")
    assert result.returncode == 2 and "--checkpoint RUN/change.pt" in json.loads(result.stdout)["fix"]
    assert not (tmp_path / "r.json").exists()


def test_agent_bench_drafts_each_source_with_the_run_that_left_its_family_out(
    tiny_run: tuple[Path, ChangeTrainingSummary], tmp_path: Path
) -> None:
    from craft_agent.agent.offline import OfflineBackend
    from craft_agent.bench.agent import run_agent_bench

    data = tmp_path / "data"
    make_folder_source(data / "toy_a", pairs=1, pre="pre", post="post", masks="mask")
    runs = tmp_path / "runs"
    (runs / "toy").mkdir(parents=True)
    shutil.copy(tiny_run[0] / "change.pt", runs / "toy" / "change.pt")
    report = run_agent_bench({"offline": OfflineBackend}, ClassicalMaskEngine(), pairs=0, data=data, left_out_runs=runs)
    toy = report["sources"]["toy_a"]
    assert set(toy) == {"labels", "detector", "learned_left_out"}
    left_out = toy["learned_left_out"]
    assert left_out["detector"] == "learned" and left_out["checkpoint"] == str(runs / "toy" / "change.pt")
    assert left_out["pairs"] == 1 and 0.0 <= left_out["union_iou"] <= 1.0
    assert toy["detector"]["detector"] == "classical"
    shutil.rmtree(runs / "toy")
    with pytest.raises(ConfigError, match="no run for the toy family"):
        run_agent_bench({"offline": OfflineBackend}, ClassicalMaskEngine(), pairs=0, data=data, left_out_runs=runs)


def test_agent_bench_drafts_each_pair_with_the_run_that_held_it_out(
    tiny_run: tuple[Path, ChangeTrainingSummary], tmp_path: Path
) -> None:
    from craft_agent.agent.offline import OfflineBackend
    from craft_agent.bench.agent import held_out_checkpoints, run_agent_bench

    data = tmp_path / "data"
    make_folder_source(data / "toy_a", pairs=2, pre="pre", post="post", masks="mask")
    runs = tmp_path / "runs"
    for label, pair in (("fold-0", "p0"), ("fold-1", "p1")):
        (runs / label).mkdir(parents=True)
        shutil.copy(tiny_run[0] / "change.pt", runs / label / "change.pt")
        listing = {"protocol": "pairs", "held_out": [f"toy_a/{pair}"]}
        (runs / label / "held_out.json").write_text(json.dumps(listing))
    assert held_out_checkpoints(runs) == {
        "toy_a/p0": runs / "fold-0" / "change.pt",
        "toy_a/p1": runs / "fold-1" / "change.pt",
    }
    report = run_agent_bench({"offline": OfflineBackend}, ClassicalMaskEngine(), pairs=0, data=data, left_out_runs=runs)
    left_out = report["sources"]["toy_a"]["learned_left_out"]
    assert left_out["detector"] == "learned" and left_out["pairs"] == 2 and left_out["failed"] == 0
    assert left_out["checkpoints"] == [str(runs / "fold-0" / "change.pt"), str(runs / "fold-1" / "change.pt")]
    # a pair no run held out cannot be scored as unseen
    (runs / "fold-1" / "held_out.json").write_text(json.dumps({"protocol": "pairs", "held_out": []}))
    with pytest.raises(ConfigError, match=r"no run in .* left out toy_a/p1"):
        run_agent_bench({"offline": OfflineBackend}, ClassicalMaskEngine(), pairs=0, data=data, left_out_runs=runs)


def test_a_datasets_split_folders_are_one_source_named_after_the_dataset(tmp_path: Path) -> None:
    """LEVIR-CD as distributed (train/ test/ splits of A/ B/ label/): one source, "LEVIR-CD", at its 0.5 m;
    CDD's OUT/ masks are read too."""
    make_folder_source(tmp_path / "LEVIR-CD" / "train", pairs=2)
    make_folder_source(tmp_path / "LEVIR-CD" / "test", pairs=1)
    make_folder_source(tmp_path / "CDD" / "val", pairs=1, masks="OUT")
    data = load_change_data([tmp_path / "LEVIR-CD", tmp_path / "CDD" / "val"])
    assert data.problems == [] and data.sources == ["LEVIR-CD", "CDD"]
    assert sorted((p.source, p.name, p.gsd_m) for p in data.pairs) == [
        ("CDD", "p0", None),
        ("LEVIR-CD", "test/p0", 0.5),
        ("LEVIR-CD", "train/p0", 0.5),
        ("LEVIR-CD", "train/p1", 0.5),
    ]
