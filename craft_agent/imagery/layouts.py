"""Finding image pairs in a source: folder layouts and manifests.

Recognised layouts (first match wins):

- ``manifest``: a ``manifest.jsonl`` / ``manifest.csv`` in the folder, or SRC itself is such a file.
  One pair per row: ``pre``, ``post``, optional ``mask``, ``id``, ``domain``, ``group``, ``date_pre``,
  ``date_post``, ``changes`` (JSONL: a list of known changes with ``mask``, ``change_type``, ``category``...).
- ``mtrefseg``: ``A/ B/ masks/ referring_expression/`` (also one level down per split: ``train/``, ``val/``...).
- ``folders``: two date folders (``A/ B/``, ``pre/ post/``, ``im1/ im2/``, ``t1/ t2/``, ``before/ after/``,
  ``time1/ time2/``, ``Image1/ Image2/``) with an optional mask folder (``label/``, ``labels/``, ``mask/``,
  ``masks/``, ``gt/``, ``cm/``, ``OUT/``) or semantic label maps per date (``label1/ label2/``, ``label_pre/
  label_post/``; see ``imagery/semantic.py``). S2Looking's layout (``Image1/ Image2/ label/ label1/ label2/``)
  is the exception: its ``label1/`` and ``label2/`` are binary maps of the newly built and of the demolished
  buildings, read as typed masks (:data:`TYPED_FOLDERS`).
  A date folder holds image files, or one sub-folder per pair of single-band files (``*_B02.tif``...).
- ``collection``: none of the above, but sub-folders that are sources themselves (e.g. ``shared/data``).

Discovery only finds and pairs files; problems it sees (a missing partner, a path that escapes the
source) become failures for that pair, never for the whole source.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from craft_agent.errors import IngestError
from craft_agent.formats.mtrefseg import RecordError, read_record, record_files
from craft_agent.imagery.raster import IMAGE_SUFFIXES, date_from_name
from craft_agent.runs import Failure

DATE_FOLDERS = [
    ("A", "B"),
    ("pre", "post"),
    ("im1", "im2"),
    ("t1", "t2"),
    ("before", "after"),
    ("time1", "time2"),
    ("Image1", "Image2"),
]
MASK_FOLDERS = ["label", "labels", "mask", "masks", "gt", "cm", "OUT"]
"""Binary change mask folders (``OUT/`` is CDD's, ``cm/`` OSCD's)."""
TYPED_FOLDERS = {("Image1", "Image2"): ("label1", "label2")}
"""Date folders -> (appeared, disappeared) binary mask folders: S2Looking ships ``label1/`` with the newly built
buildings and ``label2/`` with the demolished ones (any non-black pixel), beside the combined ``label/``."""
SEMANTIC_FOLDERS = [("label1", "label2"), ("label_pre", "label_post"), ("label_A", "label_B"), ("label_t1", "label_t2")]
"""Folder pairs holding one land-cover label map per date (SECOND's ``label1/ label2/``), read with a class table."""
SPLIT_FOLDERS = {"train", "training", "val", "valid", "validation", "test", "testing", "trainval"}
"""Split folders of a dataset (``LEVIR-CD/test/A/``): the dataset is the folder above them."""
MANIFEST_NAMES = ["manifest.jsonl", "manifest.csv"]
_BAND_IN_NAME = re.compile(r"(?:^|[_\-.])(B\d{1,2}A?)$", re.IGNORECASE)
_SIDECARS = (".aux.xml", ".ovr", ".tfw", ".pgw", ".jgw", ".prj", ".xml", ".msk")


def dataset_name(folder: Path) -> str:
    """The name of the dataset a source folder belongs to: the folder's own, or the one above a split folder."""
    return folder.parent.name if folder.name.lower() in SPLIT_FOLDERS and folder.parent.name else folder.name


@dataclass(frozen=True)
class ImageSource:
    """One date of a pair: a single file, or single-band files making one multi-band image."""

    files: tuple[Path, ...]
    band_names: tuple[str, ...] = ()

    @property
    def is_band_set(self) -> bool:
        return len(self.files) > 1 or bool(self.band_names)

    def describe(self) -> str:
        return str(self.files[0]) if len(self.files) == 1 else str(self.files[0].parent)


@dataclass(frozen=True)
class ChangeSpec:
    """A known change declared by a manifest or an annotated dataset."""

    mask: Path
    change_type: str | None = None
    category: str | None = None
    position: str | None = None
    expressions: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass
class PairSpec:
    """A pair as found on disk, before any pixel is read."""

    name: str
    layout: str
    root: Path
    pre: ImageSource
    post: ImageSource
    mask: Path | None = None
    semantic: tuple[Path, Path] | None = None
    typed: tuple[Path, Path] | None = None
    """(appeared, disappeared) binary masks (:data:`TYPED_FOLDERS`)."""
    domain: str | None = None
    group: str | None = None
    date_pre: date | None = None
    date_post: date | None = None
    changes: list[ChangeSpec] = field(default_factory=list)


@dataclass
class Discovery:
    """What a source holds: pair specs, problems found while pairing, files that were ignored."""

    layout: str
    specs: list[PairSpec] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def extend(self, other: Discovery) -> None:
        self.specs.extend(other.specs)
        self.failures.extend(other.failures)
        self.ignored.extend(other.ignored)


def inside(root: Path, path: Path) -> bool:
    """True when ``path`` (symlinks resolved) lies inside ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _escape_failure(root: Path, path: Path) -> Failure:
    return Failure(
        input=str(path),
        error=f"{path} resolves to {path.resolve()}, outside the source folder {root}; "
        "paths that escape the source are refused. Fix: copy the file into the source folder "
        "or ingest the folder that contains it.",
    )


def discover(src: Path) -> Discovery:
    """Find the pairs in ``src`` (a folder or a manifest file).

    Raises:
        IngestError: when ``src`` does not exist or holds no recognisable layout at all.
    """
    if not src.exists():
        raise IngestError(str(src), f"source {src} does not exist.", hint="check the path.")
    if src.is_file():
        if src.suffix.lower() in (".jsonl", ".csv"):
            return discover_manifest(src)
        raise IngestError(
            str(src),
            f"{src} is a file but not a manifest (.jsonl or .csv).",
            hint="pass a folder of images or a manifest file.",
        )
    for name in MANIFEST_NAMES:
        if (src / name).is_file():
            return discover_manifest(src / name)
    if (src / "referring_expression").is_dir():
        return discover_mtrefseg(src)
    splits = [d for d in sorted(src.iterdir()) if d.is_dir() and (d / "referring_expression").is_dir()]
    if splits:
        result = Discovery(layout="mtrefseg")
        for split in splits:
            result.extend(discover_mtrefseg(split, prefix=f"{split.name}/"))
        return result
    for pre_name, post_name in DATE_FOLDERS:
        if (src / pre_name).is_dir() and (src / post_name).is_dir():
            return discover_folders(src, pre_name, post_name)
    children = [d for d in sorted(src.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    collection = Discovery(layout="collection")
    for child in children:
        if is_source(child):
            sub = discover(child)
            for spec in sub.specs:
                spec.name = f"{child.name}/{spec.name}"
            collection.extend(sub)
    if collection.specs or collection.failures:
        return collection
    raise IngestError(
        str(src),
        f"no image pairs found in {src}.",
        hint="expected A/ and B/ (or pre/ and post/) folders with matching file names, a manifest.jsonl "
        "or manifest.csv, or an MTRefSeg split (A/ B/ masks/ referring_expression/).",
    )


def is_source(folder: Path) -> bool:
    """Whether ``folder`` holds pairs in a recognised layout (a manifest, an MTRefSeg split, two date folders),
    itself or in a dataset's split folders (``LEVIR-CD/train/ test/``); a folder of several sources is not one."""
    if not folder.is_dir():
        return False
    if _looks_like_source(folder):
        return True
    return any(d.is_dir() and d.name.lower() in SPLIT_FOLDERS and _looks_like_source(d) for d in folder.iterdir())


def _looks_like_source(folder: Path) -> bool:
    if any((folder / n).is_file() for n in MANIFEST_NAMES) or (folder / "referring_expression").is_dir():
        return True
    return any((folder / a).is_dir() and (folder / b).is_dir() for a, b in DATE_FOLDERS)


def _is_sidecar(path: Path) -> bool:
    name = path.name.lower()
    return name.startswith(".") or name.endswith(_SIDECARS)


def _date_entries(folder: Path, root: Path, result: Discovery, broken: set[str]) -> dict[str, ImageSource]:
    """Map pair name -> image source for one date folder.

    Ambiguous or escaping entries become failures and their names go into ``broken``, so the
    partner in the other date folder is not reported a second time as missing its partner.
    """
    entries: dict[str, ImageSource] = {}
    seen: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if _is_sidecar(entry):
            continue
        key = entry.name if entry.is_dir() else entry.stem
        if not inside(root, entry):
            result.failures.append(_escape_failure(root, entry))
            broken.add(key)
            continue
        if entry.is_dir():
            source = _band_set(entry, root, result)
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            source = ImageSource(files=(entry,))
        else:
            result.ignored.append(str(entry))
            continue
        if source is None:
            broken.add(key)
            continue
        if key in seen:
            result.failures.append(
                Failure(
                    input=str(entry),
                    error=f"{entry} and {seen[key]} both claim pair '{key}' in {folder}. "
                    "Fix: keep one file per pair name in each date folder.",
                )
            )
            entries.pop(key, None)
            broken.add(key)
            continue
        seen[key] = entry
        entries[key] = source
    return entries


def _band_set(folder: Path, root: Path, result: Discovery) -> ImageSource | None:
    """Single-band files of one date in ``folder``, ordered by band name."""
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    files = [f for f in files if not _is_sidecar(f)]
    if not files:
        result.failures.append(
            Failure(
                input=str(folder),
                error=f"{folder} is an empty band folder (no image files). "
                "Fix: put the date's band files (e.g. *_B02.tif) in it, or remove it.",
            )
        )
        return None
    for f in files:
        if not inside(root, f):
            result.failures.append(_escape_failure(root, f))
            return None
    if len(files) == 1:
        return ImageSource(files=(files[0],))
    bands: dict[str, Path] = {}
    for f in files:
        match = _BAND_IN_NAME.search(f.stem)
        if not match:
            result.failures.append(
                Failure(
                    input=str(folder),
                    error=f"{folder} holds several files but {f.name} has no band name (like _B02). "
                    "Fix: name band files *_B02.tif, *_B03.tif..., or keep one multi-band file per date.",
                )
            )
            return None
        band = match.group(1).upper()
        band = f"B{int(band[1:].rstrip('A')):02d}{'A' if band.endswith('A') else ''}"
        bands[band] = f
    ordered = sorted(bands)
    return ImageSource(files=tuple(bands[b] for b in ordered), band_names=tuple(ordered))


def _mask_files(src: Path, root: Path, result: Discovery) -> dict[str, Path]:
    for name in MASK_FOLDERS:
        folder = src / name
        if folder.is_dir():
            masks: dict[str, Path] = {}
            for entry in sorted(folder.iterdir()):
                if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES and not _is_sidecar(entry):
                    if not inside(root, entry):
                        result.failures.append(_escape_failure(root, entry))
                        continue
                    masks.setdefault(entry.stem, entry)
            return masks
    return {}


def _semantic_files(src: Path, result: Discovery) -> dict[str, tuple[Path, Path]]:
    """Pair name -> (label map before, label map after), from the first semantic folder pair present."""
    for before_name, after_name in SEMANTIC_FOLDERS:
        if (src / before_name).is_dir() and (src / after_name).is_dir():
            return _paired_files(src, before_name, after_name, "label map", result)
    return {}


def _paired_files(
    src: Path, first_name: str, second_name: str, what: str, result: Discovery
) -> dict[str, tuple[Path, Path]]:
    """Pair name -> (file in ``first_name``, file in ``second_name``), matched by stem; a file without its
    partner is a failure of that pair."""
    first_folder, second_folder = src / first_name, src / second_name
    found: dict[str, list[Path | None]] = {}
    for index, folder in enumerate((first_folder, second_folder)):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES and not _is_sidecar(entry):
                if not inside(src, entry):
                    result.failures.append(_escape_failure(src, entry))
                    continue
                found.setdefault(entry.stem, [None, None])[index] = entry
    files: dict[str, tuple[Path, Path]] = {}
    for key, (first, second) in found.items():
        if first is None or second is None:
            present = first or second
            result.failures.append(
                Failure(
                    input=str(present),
                    error=f"{present} has no partner {what} in {second_folder if first else first_folder}. "
                    "Fix: add the other one with the same name, or remove this one.",
                )
            )
            continue
        files[key] = (first, second)
    return files


def discover_folders(src: Path, pre_name: str, post_name: str) -> Discovery:
    """Pairs from two date folders matched by file (or band-folder) name."""
    result = Discovery(layout="folders")
    broken: set[str] = set()
    pre = _date_entries(src / pre_name, src, result, broken)
    post = _date_entries(src / post_name, src, result, broken)
    masks = _mask_files(src, src, result)
    typed_folders = TYPED_FOLDERS.get((pre_name, post_name))
    typed = _paired_files(src, *typed_folders, "label", result) if typed_folders else {}
    semantic = {} if typed_folders else _semantic_files(src, result)
    for key in sorted((set(pre) | set(post)) - broken):
        if key not in post:
            result.failures.append(
                Failure(
                    input=pre[key].describe(),
                    error=f"{pre[key].describe()} has no partner in {src / post_name} (expected '{key}' there). "
                    "Fix: add the later image with the same name, or remove the earlier one.",
                )
            )
            continue
        if key not in pre:
            result.failures.append(
                Failure(
                    input=post[key].describe(),
                    error=f"{post[key].describe()} has no partner in {src / pre_name} (expected '{key}' there). "
                    "Fix: add the earlier image with the same name, or remove the later one.",
                )
            )
            continue
        result.specs.append(
            PairSpec(
                name=key,
                layout="folders",
                root=src,
                pre=pre[key],
                post=post[key],
                mask=masks.get(key),
                semantic=semantic.get(key),
                typed=typed.get(key),
                date_pre=date_from_name(pre[key].files[0].name),
                date_post=date_from_name(post[key].files[0].name),
            )
        )
    if not result.specs and not result.failures:
        raise IngestError(
            str(src),
            f"{src / pre_name} and {src / post_name} hold no images.",
            hint="put the earlier images in the first folder and the later ones, same names, in the second.",
        )
    return result


def _resolve_under(root: Path, value: str, folders: list[Path]) -> Path | None:
    """``value`` as a path relative to the first of ``folders`` where it exists (or to root)."""
    for base in [*folders, root]:
        candidate = base / value
        if candidate.exists():
            return candidate
    return None


def discover_mtrefseg(split: Path, prefix: str = "") -> Discovery:
    """Pairs of an MTRefSeg split: ``A/ B/`` images plus expressions and masks from ``referring_expression/``."""
    result = (
        discover_folders(split, "A", "B")
        if (split / "A").is_dir() and (split / "B").is_dir()
        else Discovery(layout="mtrefseg")
    )
    result.layout = "mtrefseg"
    by_name = {spec.name: spec for spec in result.specs}
    for spec in result.specs:
        spec.layout = "mtrefseg"
        spec.mask = None  # MTRefSeg masks are per expression, read below
        spec.name = f"{prefix}{spec.name}"
    for path in record_files(split):
        try:
            record = read_record(path)
        except RecordError as exc:
            result.failures.append(Failure(input=str(path), error=str(exc)))
            continue
        found = by_name.get(Path(record.img_a).stem)
        if found is None:
            result.failures.append(
                Failure(
                    input=str(path),
                    error=f"{path} refers to image {record.img_a} which is not in {split / 'A'}. "
                    "Fix: add the image pair or remove the sample file.",
                )
            )
            continue
        # Optional fields written by craft-agent's own exports; other MTRefSeg datasets simply lack them.
        if record.text("domain") in ("rs", "ns"):
            found.domain = str(record.text("domain"))
        if record.text("group_id"):
            found.group = record.text("group_id")
        for mask_value, indices in record.targets():
            mask_path = record.mask_path(mask_value)
            if mask_path is None:
                result.failures.append(
                    Failure(
                        input=str(path),
                        error=f"mask {mask_value} of {path} was not found under {split} (or escapes it). "
                        "Fix: put the mask in masks/ and refer to it by a relative path.",
                    )
                )
                continue
            found.changes.append(
                ChangeSpec(
                    mask=mask_path,
                    change_type=record.text("change_type"),
                    category=record.text("category"),
                    expressions=tuple(record.expressions[k] for k in indices if record.expressions[k]),
                    attributes=(("sample_id", record.sample_id),) if record.fields.get("sample_id") else (),
                )
            )
    return result


class ManifestRow(BaseModel):
    """One row of a manifest (JSONL object or CSV row)."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(default=None, alias="id")
    name: str | None = None
    pre: str
    post: str
    mask: str | None = None
    domain: str | None = Field(default=None, pattern=r"^(rs|ns)$")
    group: str | None = None
    date_pre: date | None = None
    date_post: date | None = None
    changes: list[dict[str, Any]] = Field(default_factory=list)


def _manifest_rows(path: Path) -> list[tuple[str, dict[str, Any] | None, str | None]]:
    """(where, row or None, error) for each row of a manifest."""
    rows: list[tuple[str, dict[str, Any] | None, str | None]] = []
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        for number, row in enumerate(reader, start=2):
            rows.append((f"{path}:{number}", {k: v for k, v in row.items() if k and v not in (None, "")}, None))
        return rows
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append((f"{path}:{number}", None, f"line {number} is not valid JSON ({exc.msg})"))
            continue
        if not isinstance(value, dict):
            rows.append((f"{path}:{number}", None, f"line {number} is not a JSON object"))
            continue
        rows.append((f"{path}:{number}", value, None))
    return rows


def discover_manifest(path: Path) -> Discovery:
    """Pairs listed in a JSONL or CSV manifest; paths are relative to the manifest's folder."""
    root = path.parent
    result = Discovery(layout="manifest")
    try:
        rows = _manifest_rows(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise IngestError(str(path), f"cannot read manifest {path}: {exc}.", hint="check the file.") from exc
    for where, raw, error in rows:
        if raw is None:
            result.failures.append(Failure(input=where, error=f"{where}: {error}. Fix: correct or remove that line."))
            continue
        try:
            row = ManifestRow.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            result.failures.append(
                Failure(input=where, error=f"{where}: invalid manifest row ({problems}). Fix: correct the row.")
            )
            continue
        spec = _spec_from_row(row, root, where, result)
        if spec is not None:
            result.specs.append(spec)
    if not rows:
        raise IngestError(str(path), f"manifest {path} lists no pairs.", hint="add one row per pair.")
    return result


def _manifest_path(root: Path, value: str, where: str, result: Discovery) -> Path | None:
    candidate = root / value
    if not inside(root, candidate):
        result.failures.append(
            Failure(
                input=where,
                error=f"{where}: path {value} escapes the manifest's folder {root}; such paths are refused. "
                "Fix: use paths relative to the manifest, inside its folder.",
            )
        )
        return None
    return candidate


def _spec_from_row(row: ManifestRow, root: Path, where: str, result: Discovery) -> PairSpec | None:
    pre = _manifest_path(root, row.pre, where, result)
    post = _manifest_path(root, row.post, where, result)
    mask = _manifest_path(root, row.mask, where, result) if row.mask else None
    if pre is None or post is None or (row.mask and mask is None):
        return None
    changes = []
    for index, change in enumerate(row.changes):
        mask_value = change.get("mask")
        change_mask = _manifest_path(root, str(mask_value), where, result) if mask_value else None
        if change_mask is None:
            if not mask_value:
                result.failures.append(
                    Failure(input=where, error=f"{where}: change {index} has no mask. Fix: add its mask path.")
                )
            return None
        expressions = change.get("expressions") or ([change["description"]] if change.get("description") else [])
        changes.append(
            ChangeSpec(
                mask=change_mask,
                change_type=change.get("change_type"),
                category=change.get("category"),
                position=change.get("position"),
                expressions=tuple(str(e) for e in expressions),
                attributes=tuple(sorted((str(k), str(v)) for k, v in (change.get("attributes") or {}).items())),
            )
        )
    # a date may be a folder of single-band files (Sentinel-2's B02.tif, B03.tif...), as in a date folder
    sources = [_band_set(path, root, result) if path.is_dir() else ImageSource(files=(path,)) for path in (pre, post)]
    if sources[0] is None or sources[1] is None:
        return None
    name = row.id or row.name or Path(row.pre).stem
    return PairSpec(
        name=name,
        layout="manifest",
        root=root,
        pre=sources[0],
        post=sources[1],
        mask=mask,
        domain=row.domain,
        group=row.group,
        date_pre=row.date_pre or date_from_name(pre.name),
        date_post=row.date_post or date_from_name(post.name),
        changes=changes,
    )
