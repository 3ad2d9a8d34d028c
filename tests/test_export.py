"""Export: formats, splits, integrity, dataset card, readers, import round trip."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.data import MTRSDataset, MTRSIterableDataset, open_dataset
from craft_agent.errors import ConfigError
from craft_agent.export import FORMATS as REGISTRY
from craft_agent.export import export_dataset, validate
from craft_agent.export.importer import import_mtrefseg
from craft_agent.export.manifest import MANIFEST, PREVIEW_NOTE
from craft_agent.export.samples import SplitConfig, split_of
from craft_agent.formats import ExportOptions
from craft_agent.imagery import IngestOptions
from craft_agent.models import RLEMask
from tests.data import audit_through_the_catalog, draft_triplets_from_truth

FORMATS = list(REGISTRY)


class Audited:
    def __init__(self, root: Path) -> None:
        self.workspace = root / "ws"
        self.catalog = Catalog(f"sqlite:///{self.workspace / 'catalog.sqlite'}")
        self.store = ImageStore(self.workspace)
        self.triplets = draft_triplets_from_truth(self.catalog, self.store, root / "src", pairs=6)
        self.outcome = audit_through_the_catalog(self.catalog, self.triplets)


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    made = Audited(tmp_path_factory.mktemp("audited"))
    yield made
    made.catalog.close()


@pytest.fixture(scope="module")
def exported(audited: Audited, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "dataset"
    export_dataset(audited.catalog, audited.store, out, FORMATS, splits=SplitConfig(ratios=(0.5, 0.25, 0.25)))
    return out


def _samples(dataset: Any) -> dict[str, dict[str, Any]]:
    return {sample["sample_id"]: sample for sample in dataset}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for key, value in a.items():
        other = b[key]
        if isinstance(value, np.ndarray):
            if not (value.shape == other.shape and np.array_equal(value, other)):
                return False
        elif value != other:
            return False
    return set(a) == set(b)


def test_only_audited_samples_leave_with_the_auditors_edits(audited: Audited, exported: Path) -> None:
    manifest = json.loads((exported / MANIFEST).read_text())
    kept = {tid for tid, action in audited.outcome.items() if action in ("accept", "fix_text", "fix_mask")}
    assert manifest["counts"]["samples"] == len(kept)
    assert manifest["skipped"]["rejected"] == sum(a == "reject" for a in audited.outcome.values())
    assert manifest["unaudited_preview"] is False and not (exported / PREVIEW_NOTE).exists()
    samples = _samples(MTRSDataset(exported, "mtrefseg"))
    assert set(samples) == kept
    for triplet in audited.triplets:
        action = audited.outcome[triplet.id]
        if action == "fix_text":
            assert samples[triplet.id]["expressions"] == [f"the edited expression {audited.triplets.index(triplet)}"]
        elif action == "fix_mask":
            (audit,) = audited.catalog.audits_for(triplet.id)
            assert audit.mask is not None
            assert np.array_equal(samples[triplet.id]["mask"], audit.mask.to_array() > 0)
        elif action == "accept":
            assert samples[triplet.id]["expressions"] == triplet.expressions
            assert np.array_equal(samples[triplet.id]["mask"], triplet.mask.to_array() > 0)


def test_every_format_validates_and_reads_back_identical_samples(exported: Path) -> None:
    report = validate(exported)
    assert report.ok, report.errors
    assert report.formats == FORMATS and report.masks_checked > 0
    reference = _samples(MTRSDataset(exported, "mtrefseg"))
    assert any(not s["mask"].any() for s in reference.values()), "a no-target sample should be exported"
    for fmt in FORMATS[1:]:
        other = _samples(open_dataset(exported, fmt))
        assert set(other) == set(reference), fmt
        for sample_id, sample in reference.items():
            assert _same(sample, other[sample_id]), (fmt, sample_id)
    train = _samples(MTRSIterableDataset(exported, split="train"))
    assert train and all(s["split"] == "train" for s in train.values())
    first = next(iter(reference.values()))
    assert first["image_a"].dtype == np.uint8 and first["image_a"].ndim == 3 and first["mask"].dtype == bool


def test_mtrefseg_layout_is_what_the_published_loaders_read(exported: Path) -> None:
    split = next(p for p in sorted((exported / "mtrefseg").iterdir()) if p.is_dir())
    sample_file = sorted((split / "referring_expression").glob("*.json"))[0]
    sample = json.loads(sample_file.read_text())
    assert {"img_A", "img_B", "referring_expressions", "mask", "sample_id"} <= set(sample)
    assert (split / "A" / sample["img_A"]).is_file() and (split / "B" / sample["img_B"]).is_file()
    assert len(sample["mask"]) == len(sample["referring_expressions"])
    import cv2

    mask = cv2.imread(str(split / "masks" / sample["mask"][0]["path"]), cv2.IMREAD_UNCHANGED)
    assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255}


@pytest.fixture
def hf_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Hugging Face ``datasets`` on local files only: it never reaches for the hub."""
    # Read when datasets is first imported.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return pytest.importorskip("datasets")


def test_parquet_images_decode_as_pil_images_in_hugging_face_datasets(
    exported: Path, tmp_path: Path, hf_datasets: Any
) -> None:
    files = {
        split: str(exported / "parquet" / f"{split}-*.parquet")
        for split in ("train", "val", "test")
        if list((exported / "parquet").glob(f"{split}-*.parquet"))
    }
    loaded = hf_datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf"))
    total = sum(len(row["samples"]) for split in loaded.values() for row in split)
    manifest = json.loads((exported / MANIFEST).read_text())
    assert total == manifest["counts"]["samples"]
    assert loaded["train"].features["image_a"] == hf_datasets.Image()
    assert loaded["train"].features["image_b"] == hf_datasets.Image()
    import cv2

    for split, rows in loaded.items():
        for row in rows:
            for column, folder in (("image_a", "A"), ("image_b", "B")):
                image = row[column]
                assert image.size == (row["width"], row["height"])
                stored = cv2.imread(str(exported / "mtrefseg" / split / folder / f"{row['pair_id']}.png"))
                assert np.array_equal(np.asarray(image.convert("RGB")), cv2.cvtColor(stored, cv2.COLOR_BGR2RGB))
            # Masks stay COCO RLE, one struct per target of the pair.
            for sample in row["samples"]:
                mask = RLEMask(size=tuple(sample["mask_size"]), counts=sample["mask_counts"])
                assert mask.size == (row["height"], row["width"])


def test_load_dataset_on_the_export_folder_reads_its_parquet_splits(
    exported: Path, tmp_path: Path, hf_datasets: Any
) -> None:
    manifest = json.loads((exported / MANIFEST).read_text())
    loaded = hf_datasets.load_dataset(str(exported), cache_dir=str(tmp_path / "hf"))
    present = [split for split, n in manifest["counts"]["samples_by_split"].items() if n]
    assert sorted(loaded) == sorted(present)
    for split in present:
        assert len(loaded[split]) == manifest["counts"]["pairs_by_split"][split]
        assert sum(len(row["samples"]) for row in loaded[split]) == manifest["counts"]["samples_by_split"][split]
        assert {row["split"] for row in loaded[split]} == {split}
    assert loaded[present[0]].features["image_a"] == hf_datasets.Image()
    card = _front_matter(exported / "README.md")
    assert card["license"] == "unknown" and card["task_categories"] == ["image-segmentation"]
    assert card["size_categories"] == ["n<1K"] and card["pretty_name"] == manifest["name"]
    assert "referring-segmentation" in card["tags"]


def _front_matter(readme: Path) -> dict[str, Any]:
    import yaml

    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n"), "the card has no YAML front matter"
    return dict(yaml.safe_load(text.split("---\n")[1]))


def _rows_in_closed_shards(folder: Path) -> int:
    import pyarrow.parquet as pq

    rows = 0
    for path in folder.glob("*.parquet"):
        with contextlib.suppress(OSError, ValueError):  # still being written: no footer yet
            rows += pq.read_metadata(path).num_rows
    return rows


def test_parquet_shards_are_written_while_the_pairs_are_read(
    audited: Audited, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from craft_agent.export.samples import select_samples
    from craft_agent.formats import parquet as parquet_shards
    from craft_agent.formats.base import ImageSource

    selection = select_samples(audited.catalog, SplitConfig(ratios=(1.0, 0.0, 0.0)))
    pairs, per_shard = len(selection.pairs), 2
    assert pairs > 2 * per_shard, "the test needs three shards or more"
    streamed = tmp_path / "streamed"

    on_disk: list[int] = []

    class WatchedImages(ImageSource):
        """Notes, as each pair's images are read, how many rows the closed shards hold."""

        def pair_png(self, pair_id: str) -> tuple[bytes, bytes]:
            on_disk.append(_rows_in_closed_shards(streamed))
            return super().pair_png(pair_id)

    monkeypatch.setattr(parquet_shards, "ROW_GROUP_PAIRS", 1, raising=False)
    parquet_shards.write(
        selection, WatchedImages(audited.store, selection.pairs), streamed, ExportOptions(samples_per_shard=per_shard)
    )
    # Only the shard being written is held: every earlier one is on disk when a pair is read.
    assert on_disk == [k // per_shard * per_shard for k in range(pairs)]
    shards = sorted(streamed.glob("*.parquet"))
    total = -(-pairs // per_shard)
    assert [p.name for p in shards] == [f"train-{k:05d}-of-{total:05d}.parquet" for k in range(total)]

    # The content does not depend on the sharding, and is the pairs' stored images and their samples.
    whole = tmp_path / "whole"
    parquet_shards.write(selection, ImageSource(audited.store, selection.pairs), whole, ExportOptions())
    (single,) = whole.glob("*.parquet")
    assert pq.ParquetFile(single).metadata.num_row_groups == pairs, "a shard is written a row group at a time"
    rows = pa.concat_tables([pq.read_table(p) for p in shards]).to_pylist()
    assert rows == pq.read_table(single).to_pylist()
    assert [row["pair_id"] for row in rows] == sorted(selection.pairs)
    images = ImageSource(audited.store, selection.pairs)
    for row in rows:
        pre, post = images.pair_png(row["pair_id"])
        assert row["image_a"] == {"bytes": pre, "path": None} and row["image_b"] == {"bytes": post, "path": None}
        expected = [s for s in selection.samples if s.pair_id == row["pair_id"]]
        assert [(s["sample_id"], s["mask_counts"], s["expressions"]) for s in row["samples"]] == [
            (s.sample_id, s.mask.counts, s.expressions) for s in expected
        ]


def test_write_shards_pulls_rows_as_it_writes_them(exported: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from craft_agent.formats.parquet import write_shards

    rows = [row for path in sorted((exported / "parquet").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    assert len(rows) >= 5
    folder = tmp_path / "shards"
    folder.mkdir()
    on_disk = []

    def generated() -> Iterator[dict[str, Any]]:
        for row in rows:
            on_disk.append(_rows_in_closed_shards(folder))
            yield row

    written = write_shards(generated(), len(rows), folder, "all", per_shard=2)
    assert on_disk == [k // 2 * 2 for k in range(len(rows))]
    assert [pq.read_metadata(p).num_rows for p in written] == [2] * (len(rows) // 2) + [1] * (len(rows) % 2)
    assert [row for p in written for row in pq.read_table(p).to_pylist()] == rows
    with pytest.raises(ValueError, match="announced"):
        write_shards(iter(rows), len(rows) + 1, tmp_path, "short", per_shard=2)
    with pytest.raises(ValueError, match="announced"):
        write_shards(iter(rows), len(rows) - 1, tmp_path, "long", per_shard=2)


def test_grefcoco_marks_no_target_with_minus_one(exported: Path) -> None:
    refs = json.loads((exported / "grefcoco" / "grefs(unc).json").read_text())
    empty = [r for r in refs if r["no_target"]]
    assert empty and all(r["ann_id"] == [-1] for r in empty)
    assert all(isinstance(r["ann_id"], list) and r["ann_id"] != [-1] for r in refs if not r["no_target"])


def test_re_export_is_byte_identical(audited: Audited, exported: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    export_dataset(audited.catalog, audited.store, again, FORMATS, splits=SplitConfig(ratios=(0.5, 0.25, 0.25)))
    first = {p.relative_to(exported): p.read_bytes() for p in exported.rglob("*") if p.is_file()}
    second = {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_a_corrupted_byte_fails_validation_loudly(exported: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    shard = sorted((broken / "webdataset").glob("*.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = validate(broken)
    assert not report.ok and any("checksum mismatch" in e and shard.name in e for e in report.errors)

    done = subprocess.run(
        [sys.executable, "-m", "craft_agent.cli", "validate", str(broken)], capture_output=True, text=True
    )
    assert done.returncode == 1 and "INVALID" in done.stdout

    # A consistent manifest does not hide a wrong mask: re-hash after replacing one with a wrong-sized one.
    import cv2

    from craft_agent.export.manifest import file_table

    mask = sorted((broken / "mtrefseg").rglob("masks/*.png"))[0]
    cv2.imwrite(str(mask), np.zeros((7, 7), np.uint8))
    manifest = json.loads((broken / MANIFEST).read_text())
    manifest["files"] = file_table(broken)
    (broken / MANIFEST).write_text(json.dumps(manifest))
    errors = validate(broken).errors
    assert any("mask is 7x7" in e for e in errors)
    (broken / "extra.txt").write_text("stray")
    assert any("extra.txt: not listed" in e for e in validate(broken).errors)
    (broken / MANIFEST).unlink()
    assert any("not a complete export" in e for e in validate(broken).errors)


def test_unaudited_preview_is_marked(audited: Audited, tmp_path: Path) -> None:
    out = tmp_path / "preview"
    summary = export_dataset(audited.catalog, audited.store, out, ["mtrefseg"], include_unaudited=True)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["unaudited_preview"] is True and (out / PREVIEW_NOTE).is_file()
    assert "UNAUDITED PREVIEW" in (out / "README.md").read_text()
    queued = sum(a == "queued" for a in audited.outcome.values())
    kept = sum(a in ("accept", "fix_text", "fix_mask") for a in audited.outcome.values())
    assert summary.samples == kept + queued and summary.skipped["rejected"] > 0
    assert validate(out).ok


def test_card_gives_audit_rates_sample_previews_and_warns_of_an_empty_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2
    import matplotlib.figure

    from craft_agent.models import AuditRecord, TripletState, Verdict

    plotted: dict[str, list[float]] = {}
    savefig = matplotlib.figure.Figure.savefig

    def noting_ticks(figure: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
        axis, name = figure.axes[0], Path(target).name
        # Counts on y everywhere; words per expression on x too (the mask area's x is a percentage).
        plotted[name] = [*axis.get_yticks(), *(axis.get_xticks() if name == "expression_length.png" else [])]
        return savefig(figure, target, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", noting_ticks)
    workspace = tmp_path / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        triplets = draft_triplets_from_truth(catalog, store, tmp_path / "src", pairs=1)
        assert len(triplets) >= 4 and not triplets[0].mask.is_empty
        for triplet, verdict in zip(triplets, (Verdict.ACCEPT, Verdict.REJECT, Verdict.NEEDS_FIX), strict=False):
            audit = AuditRecord(
                id=f"api-{triplet.id}", triplet_id=triplet.id, verdict=verdict, auditor="a@example.org", backend="api"
            )
            catalog.save_audits([audit])
            queued = triplet.moved_to(TripletState.QUEUED_FOR_AUDIT)
            catalog.upsert_triplet(queued)
            decided = queued.model_copy(update={"audit_id": audit.id})
            if verdict.resulting_state is not decided.state:  # a "needs fix" leaves it in the queue
                decided = decided.moved_to(verdict.resulting_state)
            catalog.upsert_triplet(decided)
        out = tmp_path / "one-sample"
        summary = export_dataset(catalog, store, out, ["mtrefseg"], license="CC-BY-4.0")
        group = catalog.get_pair(triplets[0].pair_id).group_id
    assert summary.samples == 1 and validate(out).ok
    manifest = json.loads((out / MANIFEST).read_text())
    readme = (out / "README.md").read_text()

    # Audit rates over the triplets of the domain: 1 accepted, 1 rejected, 1 needs fix, the rest waiting.
    assert manifest["audit"] == {
        "accepted": 1,
        "fixed": 0,
        "rejected": 1,
        "needs_fix": 1,
        "awaiting_audit": len(triplets) - 3,
        "audited": 3,
        "rejection_rate": 0.3333,
        "needs_fix_rate": 0.3333,
        "fix_rate": 0.0,
    }
    assert "rejection rate 33.3 %" in readme and "needs-fix rate 33.3 %" in readme

    # The one pair's scene group fell into one split; the other two are empty, and the export says so.
    empty = [split for split in ("train", "val", "test") if split != split_of(group, SplitConfig())]
    assert len(summary.warnings) == 2 and summary.warnings == manifest["warnings"]
    for split, warning in zip(empty, summary.warnings, strict=True):
        assert warning.startswith(f"the {split} split is empty: none of the export's 1 scene group fell into it")
        assert f"> **Warning:** {warning}" in readme

    # Wording in the right number, and whole counts on integer ticks.
    from craft_agent.export.card import count_of

    assert "- 1 sample on 1 pair (" in readme and "from 1 auditor;" in readme
    assert (
        count_of(1, "sample") == "1 sample"
        and count_of(2, "sample") == "2 samples"
        and count_of(0, "pair") == "0 pairs"
    )
    for plot in ("audit.png", "expression_length.png", "mask_area.png"):
        assert plotted[plot] and all(float(tick).is_integer() for tick in plotted[plot]), plot

    # A preview of the sample: both dates side by side with the mask outlined, listed in the manifest.
    assert "| ![sample 1](card/sample-1.png) | " + triplets[0].expressions[0] in readme
    assert "card/sample-1.png" in manifest["files"] and not (out / "card" / "sample-2.png").exists()
    preview = cv2.imread(str(out / "card" / "sample-1.png"))
    assert preview.shape[1] > preview.shape[0]
    outline = (preview[..., 2] > 230) & (preview[..., 1] > 200) & (preview[..., 0] < 40)  # the yellow outline
    assert outline[:, : preview.shape[1] // 2].any() and outline[:, preview.shape[1] // 2 :].any()

    # No Parquet: the card declares no configs and says what to read instead.
    card = _front_matter(out / "README.md")
    assert "configs" not in card and card["license"] == "cc-by-4.0"
    assert "This export holds only mtrefseg: no Parquet shards" in readme


_VALIDATE_IN_A_CHILD = """
import json, sys
from pathlib import Path
from craft_agent.export import validate
print(json.dumps({"optimize": sys.flags.optimize, "errors": validate(Path(sys.argv[1])).errors}))
"""


def test_validation_does_not_rely_on_assert(exported: Path, tmp_path: Path) -> None:
    import tarfile

    import pyarrow.parquet as pq

    from craft_agent.export.manifest import file_table

    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    # MTRefSeg: a sample file whose sample_id is not its name.
    sample_file = sorted((broken / "mtrefseg").rglob("referring_expression/*.json"))[0]
    record = json.loads(sample_file.read_text())
    sample_file.write_text(json.dumps({**record, "sample_id": "somebody-else"}))
    # gRefCOCO: an annotation whose area is not its mask's.
    instances_file = broken / "grefcoco" / "instances.json"
    instances = json.loads(instances_file.read_text())
    instances["annotations"][0]["area"] += 1
    instances_file.write_text(json.dumps(instances))
    # Parquet: a valid RLE mask of another size than its images.
    shard = sorted((broken / "parquet").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    rows = table.to_pylist()
    small = RLEMask.empty(7, 7)
    rows[0]["samples"][0].update(mask_size=list(small.size), mask_counts=small.counts)
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), shard)
    # WebDataset: a json whose RLE mask differs from mask.png.
    tar_path = sorted((broken / "webdataset").glob("*.tar"))[0]
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    key = next(
        m.name.split(".")[0]
        for m, data in members
        if m.name.endswith(".json") and not RLEMask(**json.loads(data)["mask_rle"]).is_empty
    )
    with tarfile.open(tar_path, "w") as tar:
        for member, data in members:
            if member.name == f"{key}.json":
                sample = json.loads(data)
                sample["mask_rle"]["counts"] = RLEMask.empty(*sample["mask_rle"]["size"]).counts
                data = json.dumps(sample).encode()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    manifest = json.loads((broken / MANIFEST).read_text())
    manifest["files"] = file_table(broken)
    (broken / MANIFEST).write_text(json.dumps(manifest))

    # python -O strips assert statements: every check must still find its problem.
    done = subprocess.run(
        [sys.executable, "-O", "-c", _VALIDATE_IN_A_CHILD, str(broken)], capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout)
    assert found["optimize"] == 1
    errors = "\n".join(found["errors"])
    assert f"{sample_file.stem}.json: not a valid MTRefSeg sample (sample_id differs from the file name)" in errors
    assert "bad annotation (area differs from the mask)" in errors
    bad_sample = f"{rows[0]['pair_id']}:{rows[0]['samples'][0]['sample_id']}"
    assert f"parquet/{shard.name}:{bad_sample}: bad mask (mask is (7, 7)" in errors
    assert f"webdataset/{tar_path.name}:{key}: bad json (mask.png and the json's RLE mask differ)" in errors


def test_splits_follow_scene_groups_and_stay_put_when_data_is_added() -> None:
    config = SplitConfig(ratios=(0.7, 0.2, 0.1), seed=3)
    groups = [f"scene-{k}" for k in range(2000)]
    before = {g: split_of(g, config) for g in groups}
    shares = {s: sum(v == s for v in before.values()) / len(groups) for s in ("train", "val", "test")}
    assert abs(shares["train"] - 0.7) < 0.04 and abs(shares["val"] - 0.2) < 0.04
    assert {g: split_of(g, config) for g in groups[:500]} == {g: before[g] for g in groups[:500]}
    assert split_of("scene-1", SplitConfig(ratios=(0.7, 0.2, 0.1), seed=4)) in ("train", "val", "test")
    with pytest.raises(ValueError, match="sum to 1"):
        SplitConfig(ratios=(0.5, 0.5, 0.5))


def test_pairs_of_one_group_share_a_split(exported: Path) -> None:
    by_group: dict[str, set[str]] = {}
    for sample in MTRSDataset(exported, "parquet"):
        record = json.loads(
            (
                exported / "mtrefseg" / sample["split"] / "referring_expression" / f"{sample['sample_id']}.json"
            ).read_text()
        )
        by_group.setdefault(record["group_id"], set()).add(sample["split"])
    assert by_group and all(len(splits) == 1 for splits in by_group.values())


def test_domain_filter_and_sharding(audited: Audited, tmp_path: Path) -> None:
    domains = {audited.catalog.get_pair(t.pair_id).domain.value for t in audited.triplets}
    for domain in sorted(domains):
        out = tmp_path / f"only-{domain}"
        export_dataset(audited.catalog, audited.store, out, ["parquet"], domain=domain)  # type: ignore[arg-type]
        assert {s["domain"] for s in MTRSDataset(out, "parquet")} == {domain}
    out = tmp_path / "sharded"
    export_dataset(
        audited.catalog, audited.store, out, ["webdataset", "parquet"], options=ExportOptions(samples_per_shard=2)
    )
    assert len(list((out / "webdataset").glob("*.tar"))) > 2
    assert len(list((out / "parquet").glob("*.parquet"))) > 1
    assert validate(out).ok


def test_an_interrupted_export_leaves_nothing_that_looks_complete(
    audited: Audited, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setitem(REGISTRY, "parquet", dataclasses.replace(REGISTRY["parquet"], write=explode))
    out = tmp_path / "interrupted"
    with pytest.raises(RuntimeError, match="disk full"):
        export_dataset(audited.catalog, audited.store, out, ["mtrefseg", "parquet"])
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="unknown export format"):
        export_dataset(audited.catalog, audited.store, out, ["coco"])


_EXPORT_IN_A_CHILD = """
import os, signal, sys
from pathlib import Path
from craft_agent.catalog import Catalog, ImageStore
import dataclasses
from craft_agent.export import FORMATS, export_dataset

def stop_in_the_middle(*args):
    if sys.argv[3] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    print("writing", flush=True)
    sys.stdin.read()

# The parquet writer runs after mtrefseg wrote its files into the staging folder.
FORMATS["parquet"] = dataclasses.replace(FORMATS["parquet"], write=stop_in_the_middle)
workspace = Path(sys.argv[1])
catalog = Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}")
export_dataset(catalog, ImageStore(workspace), Path(sys.argv[2]), ["mtrefseg", "parquet"])
"""


def test_the_next_export_removes_what_killed_exports_left_but_not_live_ones(audited: Audited, tmp_path: Path) -> None:
    out = tmp_path / "dataset"

    def child(mode: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-c", _EXPORT_IN_A_CHILD, str(audited.workspace), str(out), mode]
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    killed = child("kill")
    assert killed.wait(timeout=120) == -signal.SIGKILL
    dead_staging = tmp_path / f".dataset.partial-{killed.pid}"
    assert (dead_staging / "mtrefseg").is_dir(), "the killed export left no staging folder"
    live = child("wait")
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "writing"
        live_staging = tmp_path / f".dataset.partial-{live.pid}"
        assert (live_staging / "mtrefseg").is_dir()
        # The previous export, moved aside by a process killed before it put the new one in place.
        retired = tmp_path / f".dataset.old-{killed.pid}"
        (retired / "mtrefseg").mkdir(parents=True)
        unrelated = tmp_path / ".dataset.partial-notapid"
        unrelated.mkdir()

        summary = export_dataset(audited.catalog, audited.store, out, ["mtrefseg"])
        assert summary.samples > 0 and validate(out).ok
        assert not dead_staging.exists(), "a dead export's staging folder was left behind"
        assert (live_staging / "mtrefseg").is_dir(), "a live export's staging folder was removed"
        assert not retired.exists() and unrelated.is_dir()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["dataset", live_staging.name, unrelated.name])
    finally:
        live.kill()
        live.wait(timeout=60)


def test_a_dead_exports_retired_copy_is_kept_while_it_is_the_only_one(audited: Audited, tmp_path: Path) -> None:
    from craft_agent.export import remove_dead_staging

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=60)
    out = tmp_path / "dataset"
    retired = tmp_path / f".dataset.old-{gone.pid}"
    retired.mkdir()
    partial = tmp_path / f".dataset.partial-{gone.pid}"
    partial.mkdir()
    assert remove_dead_staging(out) == [partial]
    assert retired.is_dir(), "the only copy of the previous export was removed"


def test_import_round_trips_an_export(exported: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "imported"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        summary = import_mtrefseg(exported / "mtrefseg", catalog, store, IngestOptions())
        assert summary.failed == [] and summary.new_triplets == summary.triplets > 0
        assert import_mtrefseg(exported / "mtrefseg", catalog, store, IngestOptions()).new_triplets == 0
        again = tmp_path / "re-exported"
        export_dataset(catalog, store, again, ["mtrefseg"], splits=SplitConfig(ratios=(0.5, 0.25, 0.25)))
    original = _samples(MTRSDataset(exported, "mtrefseg"))
    round_trip = _samples(MTRSDataset(again, "mtrefseg"))
    assert set(round_trip) == set(original)
    for sample_id, sample in original.items():
        assert _same(sample, round_trip[sample_id]), sample_id


def test_cli_export_validate_import(audited: Audited, tmp_path: Path) -> None:
    def craft(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "craft_agent.cli", *args], capture_output=True, text=True)

    out = tmp_path / "cli-export"
    done = craft(
        "export", "--workspace", str(audited.workspace), "--out", str(out),
        "--format", "mtrefseg", "--format", "webdataset,parquet", "--license", "CC-BY-4.0", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["formats"] == ["mtrefseg", "webdataset", "parquet"] and summary["samples"] > 0
    assert "CC-BY-4.0" in (out / "README.md").read_text()
    assert summary["warnings"] == json.loads((out / MANIFEST).read_text())["warnings"]
    assert json.loads(craft("validate", str(out), "--json").stdout)["ok"] is True
    refused = craft("export", "--workspace", str(audited.workspace), "--out", str(out), "--format", "mtrefseg")
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    bad = craft("export", "--workspace", str(audited.workspace), "--out", str(tmp_path / "x"), "--format", "coco")
    assert bad.returncode == 2 and "mtrefseg" in bad.stderr
    for ratios in ("0.8,0.2", "a,b,c", "0.5,0.5,0.5"):
        wrong = craft(
            "export", "--workspace", str(audited.workspace), "--out", str(tmp_path / "r"), "--format", "mtrefseg",
            "--ratios", ratios,
        )  # fmt: skip
        assert wrong.returncode == 2 and "is not three ratios summing to 1" in wrong.stderr, ratios
    # Ratios that leave train and val (nearly surely) empty: the text output warns as the manifest does.
    text = craft(
        "export", "--workspace", str(audited.workspace), "--out", str(tmp_path / "t"), "--format", "mtrefseg",
        "--ratios", "0.01,0.01,0.98",
    )  # fmt: skip
    warned = json.loads((tmp_path / "t" / MANIFEST).read_text())["warnings"]
    assert text.returncode == 0 and warned and all(w.split(":")[0] in text.stdout for w in warned)
    imported = craft("import", str(out / "mtrefseg"), "--workspace", str(tmp_path / "ws2"), "--json")
    assert imported.returncode == 0 and json.loads(imported.stdout)["new_triplets"] == summary["samples"]
    Catalog(f"sqlite:///{tmp_path / 'empty' / 'catalog.sqlite'}").close()  # a workspace with nothing in it
    nothing = craft(
        "export", "--workspace", str(tmp_path / "empty"), "--out", str(tmp_path / "y"), "--format", "mtrefseg"
    )
    assert nothing.returncode == 2 and "nothing to export" in nothing.stderr


def test_bench_export_reports_throughput_against_a_plain_tar(tmp_path: Path) -> None:
    from craft_agent.bench.export import run_export_bench

    report = run_export_bench(pairs=3, size=128, formats=["mtrefseg", "webdataset"])
    assert report["samples"] > 0 and report["megabytes"] > 0
    assert report["export_mb_per_s"] > 0 and report["plain_tar_mb_per_s"] > 0
    assert report["ratio"] == pytest.approx(report["export_mb_per_s"] / report["plain_tar_mb_per_s"], rel=0.05)
