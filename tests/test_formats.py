"""The format registry: one module per format holds its writer, validator and reader, and the one MTRefSeg
parser serves reading, validation and import alike, including the variants published datasets use."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.data import MTRSDataset, MTRSIterableDataset, open_dataset
from craft_agent.errors import ConfigError
from craft_agent.evaluate import score_predictions
from craft_agent.formats import FORMATS, ValidationReport, get_format
from craft_agent.formats import mtrefseg as mtrefseg_format
from craft_agent.imagery import IngestOptions
from craft_agent.imagery.layouts import discover_mtrefseg
from tests.data import save_png, scene


def published_split(root: Path) -> Path:
    """An MTRefSeg split written the ways other datasets write it (not by craft-agent's exporter).

    ``two.json`` has no ``mask`` field and one mask per expression under ``masks/two/<k>.png``, each a
    different target; ``one.json`` gives masks as plain strings, fewer than its expressions.
    """
    split = root / "test"
    pre, post, mask = scene(3)
    save_png(split / "A" / "p.png", pre)
    save_png(split / "B" / "p.png", post)
    left = np.zeros_like(mask)
    left[8:20, 8:20] = True
    right = np.zeros_like(mask)
    right[30:50, 36:60] = True
    save_png(split / "masks" / "two" / "0.png", left)
    save_png(split / "masks" / "two" / "1.png", right)
    save_png(split / "masks" / "one.png", mask)
    records = split / "referring_expression"
    records.mkdir(parents=True)
    (records / "two.json").write_text(
        json.dumps({"img_A": "p.png", "img_B": "p.png", "referring_expressions": ["the left roof", "the right yard"]})
    )
    (records / "one.json").write_text(
        json.dumps(
            {
                "img_A": "p.png",
                "img_B": "p.png",
                "referring_expressions": ["the red square", "the square that appeared"],
                "mask": ["one.png"],
                "sample_id": "one",
            }
        )
    )
    return split


def test_every_format_registers_its_writer_validator_and_reader() -> None:
    assert list(FORMATS) == ["mtrefseg", "webdataset", "parquet", "grefcoco"]
    for name, fmt in FORMATS.items():
        assert fmt.name == name and fmt.description
        assert callable(fmt.write) and callable(fmt.validate)
        assert fmt.open is not None or fmt.stream is not None, f"{name} has no reader"
    assert [name for name, fmt in FORMATS.items() if not fmt.random_access] == ["webdataset"]
    with pytest.raises(ConfigError, match="unknown format 'coco'"):
        get_format("coco")


def test_a_record_with_a_mask_per_expression_is_read_as_one_sample_per_target(tmp_path: Path) -> None:
    split = published_split(tmp_path / "data")
    samples = list(MTRSDataset(split.parent, "mtrefseg"))
    assert [(s["sample_id"], s["expressions"], s["expression_index"]) for s in samples] == [
        ("one", ["the red square", "the square that appeared"], [0, 1]),
        ("two", ["the left roof"], [0]),
        ("two", ["the right yard"], [1]),
    ]
    assert samples[1]["mask"][10, 10] and not samples[1]["mask"][40, 40]
    assert samples[2]["mask"][40, 40] and not samples[2]["mask"][10, 10]
    assert samples[0]["change_code"] == 0 and samples[0]["split"] == "test" and samples[0]["pair_id"] == "p"
    # Streaming gives the same samples.
    streamed = list(MTRSIterableDataset(split.parent, fmt="mtrefseg"))
    assert [(s["sample_id"], s["expression_index"]) for s in streamed] == [("one", [0, 1]), ("two", [0]), ("two", [1])]

    # Import sees the same targets through the same parser: two changes of two.json, one of one.json.
    found = discover_mtrefseg(split)
    (spec,) = found.specs
    assert not found.failures
    described = sorted(
        (change.mask.relative_to(split.resolve()).as_posix(), change.expressions) for change in spec.changes
    )
    assert described == [
        ("masks/one.png", ("the red square", "the square that appeared")),
        ("masks/two/0.png", ("the left roof",)),
        ("masks/two/1.png", ("the right yard",)),
    ]


def test_predictions_are_scored_by_each_expressions_index_in_its_record(tmp_path: Path) -> None:
    split = published_split(tmp_path / "data")
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for sample in MTRSDataset(split.parent, "mtrefseg"):
        for k in sample["expression_index"]:
            cv2.imwrite(str(predictions / f"{sample['sample_id']}_{k}.png"), sample["mask"].astype(np.uint8) * 255)
    perfect = score_predictions(predictions, split.parent)
    assert perfect["samples"] == 4 and perfect["miou"] == pytest.approx(1.0) and perfect["missing"] == 0
    # Swapping two.json's predictions (each expression gets the other target) scores both as misses.
    first, second = predictions / "two_0.png", predictions / "two_1.png"
    first.rename(tmp_path / "swap")
    second.rename(first)
    (tmp_path / "swap").rename(second)
    swapped = score_predictions(predictions, split.parent)
    assert swapped["miou"] == pytest.approx(0.5)


def test_one_parser_reports_a_broken_record_the_same_way_everywhere(tmp_path: Path) -> None:
    split = published_split(tmp_path / "data")
    broken = split / "referring_expression" / "broken.json"
    broken.write_text(json.dumps({"img_A": "p.png", "referring_expressions": ["x"]}))
    why = "img_A or img_B is missing"

    report = ValidationReport(root=str(split.parent))
    mtrefseg_format.validate(split.parent, report)
    assert any(f"broken.json: not a valid MTRefSeg sample ({why})" in error for error in report.errors)
    with pytest.raises(ConfigError, match=rf"broken.json is not a valid MTRefSeg sample \({why}\)"):
        MTRSDataset(split.parent, "mtrefseg")
    found = discover_mtrefseg(split)
    assert [f.input for f in found.failures] == [str(broken)]
    assert why in found.failures[0].error and "Fix:" in found.failures[0].error
    # The good records are still there for import.
    assert len(found.specs[0].changes) == 3


def test_import_of_a_published_split_keeps_every_target(tmp_path: Path) -> None:
    from craft_agent.export.importer import import_mtrefseg

    split = published_split(tmp_path / "data")
    workspace = tmp_path / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        summary = import_mtrefseg(split, catalog, ImageStore(workspace), IngestOptions())
        assert (summary.pairs, summary.new_triplets, summary.failed) == (1, 3, [])
        assert import_mtrefseg(split, catalog, ImageStore(workspace), IngestOptions()).new_triplets == 0


def test_the_parquet_reader_reads_images_one_row_group_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    from craft_agent.formats import parquet

    rows = []
    for index in range(7):
        pre, post, mask = scene(index)
        encode = lambda array: cv2.imencode(".png", array)[1].tobytes()  # noqa: E731
        from craft_agent.models import RLEMask

        rle = RLEMask.from_array(mask)
        rows.append(
            {
                "pair_id": f"p{index}",
                "pair_name": f"p{index}",
                "domain": "rs",
                "group_id": f"p{index}",
                "split": "train",
                "width": 64,
                "height": 64,
                "image_a": {"bytes": encode(pre), "path": None},
                "image_b": {"bytes": encode(post), "path": None},
                "samples": [
                    {
                        "sample_id": f"s{index}",
                        "expressions": ["the square"],
                        "mask_size": [64, 64],
                        "mask_counts": rle.counts,
                        "no_target": False,
                        "change_type": "appear",
                        "change_code": 0,
                        "category": None,
                        "audit_state": "accepted",
                        "audit_verdict": "accept",
                        "auditor": None,
                        "edited": [],
                        "provenance": "{}",
                    }
                ],
            }
        )
    folder = tmp_path / "parquet"
    folder.mkdir()
    monkeypatch.setattr(parquet, "ROW_GROUP_PAIRS", 2)
    parquet.write_shards(iter(rows), len(rows), folder, "train", per_shard=4)
    assert sum(pq.ParquetFile(p).metadata.num_row_groups for p in folder.glob("*.parquet")) == 4

    asked: list[list[str]] = []
    original = pq.ParquetFile.read_row_group

    def watched(self: pq.ParquetFile, index: int, columns: list[str] | None = None, **kwargs: object) -> object:
        asked.append(list(columns or []))
        return original(self, index, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", watched)
    reader = open_dataset(tmp_path, "parquet")
    assert isinstance(reader, MTRSDataset) and len(reader) == 7
    assert asked and not any("image_a" in columns for columns in asked), "indexing must not read the images"
    asked.clear()
    samples = [reader[i] for i in range(len(reader))]
    assert [s["sample_id"] for s in samples] == [f"s{i}" for i in range(7)]
    assert sum("image_a" in columns for columns in asked) == 4, "each row group's images are read once in order"
    assert len(reader._reader._groups) <= parquet.CACHED_ROW_GROUPS  # type: ignore[attr-defined]
    for index, sample in enumerate(samples):
        pre, _, mask = scene(index)
        assert np.array_equal(sample["image_a"], pre[:, :, ::-1]) and np.array_equal(sample["mask"], mask)
