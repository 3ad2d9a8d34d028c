"""MTRefSeg layout, as the published MTRefSeg loaders read it: written, validated, read and imported here.

``<split>/A/<pair_id>.png``, ``<split>/B/<pair_id>.png``, ``<split>/masks/<sample_id>.png`` (binary 0/255,
all zeros for a no-target expression) and ``<split>/referring_expression/<sample_id>.json`` with ``img_A``,
``img_B`` (relative to ``A/`` and ``B/``), ``referring_expressions``, ``mask`` (one ``{"path"}`` per
expression, relative to ``masks/``) and ``sample_id``; craft-agent's extra fields (change type, category,
domain, audit) ride along and are ignored by loaders that do not know them.

:func:`read_record` is the one parser of a sample file: the reader, ``validate`` and ``craft-agent import``
(through :func:`craft_agent.imagery.layouts.discover_mtrefseg`) all use it. It accepts what published
datasets hold: a mask entry as ``{"path": ...}`` or a plain string, fewer masks than expressions (the first
mask then stands for the rest), no ``mask`` at all (``masks/<sample_id>/<k>.png``, else
``masks/<sample_id>.png``), no ``sample_id`` (the file name).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from craft_agent.errors import ConfigError
from craft_agent.formats.base import (
    ExportOptions,
    Format,
    ImageSource,
    Sample,
    ValidationReport,
    binary,
    by_split,
    check_mask,
    image_size,
    mask_png,
    rgb,
    sample_record,
)

if TYPE_CHECKING:
    from craft_agent.export.samples import Selection

NAME = "mtrefseg"
FOLDERS = ("A", "B", "masks", "referring_expression")
RECORD_HINT = 'it needs img_A, img_B, referring_expressions and mask [{"path": ...}] (one per expression).'


class RecordError(ValueError):
    """A sample file that is not a usable MTRefSeg sample; the message names the file and the fix."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path} is not a valid MTRefSeg sample ({why}). Fix: {RECORD_HINT}")
        self.why = why


@dataclass(frozen=True)
class Record:
    """One parsed ``referring_expression/<sample_id>.json``.

    ``masks`` holds one mask reference per expression (relative to ``masks/``); ``fields`` the whole JSON.
    """

    path: Path
    sample_id: str
    img_a: str
    img_b: str
    expressions: tuple[str, ...]
    masks: tuple[str, ...]
    fields: dict[str, Any]

    @property
    def split_dir(self) -> Path:
        return self.path.parent.parent

    def targets(self) -> list[tuple[str, list[int]]]:
        """Distinct masks with the indices of the expressions that refer to them, in order of appearance.

        Expressions sharing one mask file describe one target several ways. A record without expressions
        gives its mask with no indices (a known change nobody described yet).
        """
        if not self.expressions:
            return [(self.masks[0], [])]
        grouped: dict[str, list[int]] = {}
        for index, mask in enumerate(self.masks):
            grouped.setdefault(mask, []).append(index)
        return list(grouped.items())

    def mask_path(self, value: str) -> Path | None:
        """The file of a mask reference: under ``masks/`` (as published) or the split; None when missing or
        when it escapes the split folder."""
        split_dir = self.split_dir.resolve()
        for base in (split_dir / "masks", split_dir):
            candidate = (base / value).resolve()
            if candidate.is_file() and candidate.is_relative_to(split_dir):
                return candidate
        return None

    def image_path(self, which: str) -> Path:
        """The ``A`` (earlier) or ``B`` (later) image's file."""
        return self.split_dir / which / (self.img_a if which == "A" else self.img_b)

    def text(self, key: str) -> str | None:
        """An optional string field (craft-agent's extras), None when absent or not a string."""
        value = self.fields.get(key)
        return value if isinstance(value, str) and value else None


def _fail(path: Path, why: str) -> RecordError:
    return RecordError(path, why)


def _mask_value(entry: Any, path: Path) -> str:
    value = entry.get("path") if isinstance(entry, dict) else entry
    if not isinstance(value, str) or not value:
        raise _fail(path, f"mask entry {entry!r} is not a path")
    return value


def read_record(path: Path) -> Record:
    """Parse one sample file.

    Raises:
        RecordError: when the file is unreadable or lacks what a sample needs.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _fail(path, f"unreadable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _fail(path, "the file holds no JSON object")
    images = [data.get("img_A"), data.get("img_B")]
    if not all(isinstance(value, str) and value for value in images):
        raise _fail(path, "img_A or img_B is missing")
    expressions = data.get("referring_expressions", [])
    if not isinstance(expressions, list) or not all(isinstance(e, str) for e in expressions):
        raise _fail(path, "referring_expressions is not a list of strings")
    sample_id = str(data.get("sample_id") or path.stem)
    given = data.get("mask")
    if given is None:
        split_dir = path.parent.parent
        per_expression = [f"{sample_id}/{k}.png" for k in range(len(expressions))]
        if expressions and all((split_dir / "masks" / m).is_file() for m in per_expression):
            masks = per_expression
        else:
            masks = [f"{sample_id}.png"] * max(1, len(expressions))
    else:
        entries = given if isinstance(given, list) else [given]
        masks = [_mask_value(entry, path) for entry in entries]
        if not masks:
            raise _fail(path, "mask is an empty list")
        masks += [masks[0]] * (len(expressions) - len(masks))
    return Record(
        path=path,
        sample_id=sample_id,
        img_a=str(images[0]),
        img_b=str(images[1]),
        expressions=tuple(expressions),
        masks=tuple(masks[: max(1, len(expressions))]),
        fields=data,
    )


def record_files(split_dir: Path) -> list[Path]:
    return sorted((split_dir / "referring_expression").glob("*.json"))


def split_dirs(folder: Path, splits: set[str] | None = None) -> list[Path]:
    """The split folders of an MTRefSeg dataset (``folder`` itself when it is one split)."""
    if (folder / "referring_expression").is_dir():
        return [folder]
    return [
        p
        for p in sorted(folder.iterdir())
        if p.is_dir() and (p / "referring_expression").is_dir() and (splits is None or p.name in splits)
    ]


# --- writing ---------------------------------------------------------------------------------------------


def write(selection: Selection, images: ImageSource, root: Path, options: ExportOptions) -> None:
    for split, samples in by_split(selection):
        folder = root / split
        for name in FOLDERS:
            (folder / name).mkdir(parents=True, exist_ok=True)
        for sample in samples:
            image_a = folder / "A" / f"{sample.pair_id}.png"
            if not image_a.exists():
                images.copy_image(sample.pair_id, "pre", image_a)
                images.copy_image(sample.pair_id, "post", folder / "B" / f"{sample.pair_id}.png")
            (folder / "masks" / f"{sample.sample_id}.png").write_bytes(mask_png(sample))
            record = {
                "img_A": f"{sample.pair_id}.png",
                "img_B": f"{sample.pair_id}.png",
                "referring_expressions": sample.expressions,
                "mask": [{"path": f"{sample.sample_id}.png"} for _ in sample.expressions],
                "sample_id": sample.sample_id,
                **{k: v for k, v in sample_record(sample).items() if k not in ("sample_id", "referring_expressions")},
            }
            text = json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
            (folder / "referring_expression" / f"{sample.sample_id}.json").write_text(text, encoding="utf-8")


# --- validating ------------------------------------------------------------------------------------------


def validate(root: Path, report: ValidationReport) -> Counter[str]:
    """Every sample file parses, is named by its sample id, has one mask per expression, and its images and
    masks decode, match in size and are binary."""
    counts: Counter[str] = Counter()
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in record_files(split_dir):
            where = path.relative_to(root.parent).as_posix()
            try:
                record = read_record(path)
            except RecordError as exc:
                report.errors.append(f"{where}: not a valid MTRefSeg sample ({exc.why})")
                continue
            given = record.fields.get("mask")
            if record.fields.get("sample_id") != path.stem:
                report.errors.append(f"{where}: not a valid MTRefSeg sample (sample_id differs from the file name)")
                continue
            if not record.expressions or not isinstance(given, list) or len(given) != len(record.expressions):
                report.errors.append(f"{where}: not a valid MTRefSeg sample (one mask per expression is required)")
                continue
            image_a, image_b = record.image_path("A"), record.image_path("B")
            size_a = image_size(image_a.read_bytes(), where + " img_A", report) if image_a.is_file() else None
            size_b = image_size(image_b.read_bytes(), where + " img_B", report) if image_b.is_file() else None
            if size_a is None or size_b is None or size_a != size_b:
                report.errors.append(f"{where}: images missing, unreadable or of different sizes")
                continue
            for value, _ in record.targets():
                mask = record.mask_path(value)
                if mask is None:
                    report.errors.append(f"{where}: mask {value} is missing")
                    continue
                check_mask(mask.read_bytes(), size_a, f"{where} mask {value}", report)
            counts[split_dir.name] += 1
    return counts


# --- reading ---------------------------------------------------------------------------------------------


class Reader:
    """Samples of an MTRefSeg dataset by sample id: one per record, or one per distinct mask of a record."""

    def __init__(self, folder: Path, splits: set[str] | None = None) -> None:
        self.items: list[tuple[Record, str, list[int]]] = []
        for split_dir in split_dirs(folder, splits):
            for path in record_files(split_dir):
                try:
                    record = read_record(path)
                except RecordError as exc:
                    raise ConfigError(str(exc), hint="run `craft-agent validate` on the export.") from exc
                self.items += [(record, mask, indices) for mask, indices in record.targets() if indices]
        self.items.sort(key=lambda item: (item[0].sample_id, item[2][0]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        record, value, indices = self.items[index]
        path = record.mask_path(value)
        if path is None:
            raise ConfigError(f"mask {value} of {record.path} is missing.", hint="run `craft-agent validate`.")
        mask = binary(path)
        code = record.fields.get("change_code")
        return {
            "sample_id": record.sample_id,
            "pair_id": record.text("pair_id") or Path(record.img_a).stem,
            "split": record.text("split") or record.split_dir.name,
            "domain": record.text("domain"),
            "image_a": rgb(record.image_path("A")),
            "image_b": rgb(record.image_path("B")),
            "mask": mask,
            "expressions": [record.expressions[k] for k in indices],
            "expression_index": indices,
            "change_type": record.text("change_type"),
            "change_code": int(code) if isinstance(code, int) else (0 if mask.any() else -1),
            "category": record.text("category"),
        }


FORMAT = Format(
    name=NAME,
    write=write,
    validate=validate,
    open=Reader,
    description="MTRefSeg-21K's folder layout: A/ B/ masks/ referring_expression/ per split.",
)
