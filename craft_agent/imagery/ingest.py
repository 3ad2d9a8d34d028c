"""Ingestion: a source folder or manifest in, :class:`ImagePair` records in the catalog out.

One broken pair never sinks a run: each pair that fails is recorded with its reason (in the summary
and in the catalog's failures of this run) and the rest goes on. Re-ingesting the same data adds
nothing: pair ids are content hashes and the catalog ignores ids it already has.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from craft_agent.catalog import Catalog
from craft_agent.catalog.store import ImageStore
from craft_agent.errors import CatalogError, IngestError
from craft_agent.imagery.layouts import ChangeSpec, Discovery, PairSpec, dataset_name, discover
from craft_agent.imagery.normalize import (
    DateImage,
    LoadedPair,
    PairImagery,
    RgbTile,
    Window,
    open_windowed_pair,
    scan_pair,
    select_rgb,
    tile_windows,
    window_transform,
)
from craft_agent.imagery.raster import (
    RASTER_SUFFIXES,
    AnyMask,
    ArrayMask,
    MaskReader,
    Raster,
    RasterSource,
    crs_to_text,
    open_mask,
    pixel_limit,
    read_band_set,
    read_raster,
)
from craft_agent.imagery.semantic import ClassTable, semantic_changes
from craft_agent.models import (
    ChangeType,
    Domain,
    GeoReference,
    GroundTruthChange,
    ImagePair,
    PairSource,
    RLEMask,
    TileWindow,
)
from craft_agent.runs import Failure, ProgressCallback, StageRun
from craft_agent.settings import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_WINDOWED_READ_PIXELS, Settings

"""Called as (done, total, current pair name) while ingesting."""

MIN_PAIR_SIDE = 32
"""Pairs narrower or lower than this (px) are refused: nothing in them could be segmented or described."""

INVERTED_MASK_FRACTION = 0.99
"""A change mask marking at least this share of a pair as changed is reported: its convention may be inverted."""


@dataclass(frozen=True)
class IngestOptions:
    """How to turn found pairs into catalog records.

    Attributes:
        domain: domain for pairs whose source does not say (georeferenced pairs are always rs).
        group_pattern: regex whose first group, matched on the pair name, gives the scene group
            (e.g. ``^(.+)_\\d{4}_\\d{4}$`` groups crops of one tile); default: each pair (or tiled scene)
            is its own group.
        bands: 1-based band numbers to use as RGB for multi-band rasters, or None for automatic.
        tile_size / tile_overlap: pairs larger than tile_size are cut into overlapping tiles.
        stretch_percentiles: percentile stretch for data deeper than 8 bits.
        max_nodata_fraction: tiles with more nodata than this are refused.
        gsd: ground sample distance in metres per pixel for pairs without a georeference in metres (see
            :func:`ground_sample_distance`).
        class_table: JSON class table of semantic label maps; None: SECOND's palette.
        label_category: what every change of a binary change mask is (``building`` for LEVIR-CD or WHU-CD);
            None: the known dataset named by the source folder (:data:`KNOWN_SOURCES`), else unknown.
        max_image_pixels: largest PNG/JPEG read (Pillow's decompression-bomb limit, see ``pixel_limit``).
        windowed_read_pixels: GDAL raster pairs of more pixels than this (width x height) are read window by
            window, never whole (see ``normalize.open_windowed_pair``).
    """

    domain: Domain = Domain.RS
    group_pattern: str | None = None
    bands: tuple[int, int, int] | None = None
    tile_size: int = 1024
    tile_overlap: int = 128
    stretch_percentiles: tuple[float, float] = (2.0, 98.0)
    max_nodata_fraction: float = 0.95
    gsd: float | None = None
    class_table: Path | None = None
    label_category: str | None = None
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    windowed_read_pixels: int = DEFAULT_WINDOWED_READ_PIXELS

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> IngestOptions:
        values: dict[str, Any] = {
            "domain": Domain(settings.default_domain),
            "tile_size": settings.tile_size,
            "tile_overlap": settings.tile_overlap,
            "stretch_percentiles": settings.stretch_percentiles,
            "max_nodata_fraction": settings.max_nodata_fraction,
            "max_image_pixels": settings.max_image_pixels,
            "windowed_read_pixels": settings.windowed_read_pixels,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class IngestWarning:
    """Something ingested that the user should check: the input as they would name it, and what to check."""

    input: str
    warning: str

    def as_dict(self) -> dict[str, str]:
        return {"input": self.input, "warning": self.warning}


@dataclass
class BuiltScene:
    """What one found pair became: its records, the empty tiles left out, and what the user should hear."""

    pairs: list[ImagePair]
    skipped_empty_tiles: int = 0
    warnings: list[IngestWarning] = field(default_factory=list)


class IngestSummary(BaseModel):
    """What an ingest run did. ``to_json()`` is the CLI's ``--json`` output."""

    source: str
    layout: str
    ingested: int = 0
    skipped: int = 0
    failed: list[Failure] = Field(default_factory=list)
    pair_ids: list[str] = Field(default_factory=list)
    present_ids: list[str] = Field(default_factory=list)
    """Every pair of the source now in the catalog, newly ingested or already there."""
    tiled_scenes: int = 0
    skipped_empty_tiles: int = 0
    """Tiles of large scenes left out: nodata, or one flat colour in both dates."""
    replaced: int = 0
    """Pairs of earlier ingests of the same files removed because the files now give other pairs (--bands...)."""
    warnings: list[IngestWarning] = Field(default_factory=list)
    with_ground_truth: int = 0
    ignored_files: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    run_id: str = ""
    workspace: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "ingested": self.ingested,
            "skipped": self.skipped,
            "failed": [f.as_dict() for f in self.failed],
            "source": self.source,
            "layout": self.layout,
            "pairs": self.pair_ids,
            "tiled_scenes": self.tiled_scenes,
            "skipped_empty_tiles": self.skipped_empty_tiles,
            "replaced": self.replaced,
            "warnings": [w.as_dict() for w in self.warnings],
            "with_ground_truth": self.with_ground_truth,
            "ignored_files": self.ignored_files,
            "seconds": round(self.seconds, 3),
            "run_id": self.run_id,
            "workspace": self.workspace,
        }


def _read_date(spec_source: Any) -> Raster:
    if spec_source.is_band_set:
        return read_band_set(list(spec_source.files), list(spec_source.band_names))
    return read_raster(spec_source.files[0])


def _raster_source(spec_source: Any) -> RasterSource | None:
    """The date's GDAL raster or band set, its header only; None for plain images (Pillow reads them whole)."""
    if any(path.suffix.lower() not in RASTER_SUFFIXES for path in spec_source.files):
        return None
    if spec_source.is_band_set:
        return RasterSource.open_band_set(list(spec_source.files), list(spec_source.band_names))
    return RasterSource.open(spec_source.files[0])


def _read_pair(spec: PairSpec, options: IngestOptions, opened: ExitStack) -> PairImagery:
    """Both dates of a pair: window by window (files kept open in ``opened``) when both are GDAL rasters and
    one has more than ``windowed_read_pixels`` pixels, else read whole."""
    pre, post = _raster_source(spec.pre), _raster_source(spec.post)
    if pre and post and max(pre.width * pre.height, post.width * post.height) > options.windowed_read_pixels:
        return opened.enter_context(open_windowed_pair(pre, post, options.bands, options.stretch_percentiles))
    earlier = select_rgb(_read_date(spec.pre), options.bands)
    later = select_rgb(_read_date(spec.post), options.bands)
    return LoadedPair.of(earlier, later, options.stretch_percentiles)


def _id_digest(shape: tuple[int, ...], georef: GeoReference | None) -> hashlib._Hash:
    """The digest of a pair id, fed its shape and georeference; the pixels of both images come next."""
    digest = hashlib.sha256()
    digest.update(json.dumps([list(shape), georef.model_dump(mode="json") if georef else None]).encode())
    return digest


def pair_id_of(pre: np.ndarray, post: np.ndarray, georef: GeoReference | None) -> str:
    """Content id of a pair: both images' pixels, their shape and the georeference."""
    digest = _id_digest(pre.shape, georef)
    digest.update(np.ascontiguousarray(pre).tobytes())
    digest.update(np.ascontiguousarray(post).tobytes())
    return digest.hexdigest()[:16]


def _group_of(spec: PairSpec, options: IngestOptions, fallback: str) -> str:
    if spec.group:
        return spec.group
    if options.group_pattern:
        match = re.search(options.group_pattern, spec.name.rsplit("/", 1)[-1])
        if match:
            return match.group(1) if match.groups() else match.group(0)
    return fallback


def _relative(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def build_pairs(spec: PairSpec, options: IngestOptions, store: ImageStore) -> list[ImagePair]:
    """The records of one found pair (see :func:`build_scene`, which also says what was left out and why).

    Raises:
        IngestError: naming the file at fault and the fix, for any problem with this pair.
    """
    return build_scene(spec, options, store).pairs


def build_scene(spec: PairSpec, options: IngestOptions, store: ImageStore) -> BuiltScene:
    """Read, align, normalise and (when large) tile one found pair into records, storing its images.

    Returns:
        The records, the count of empty tiles left out, and warnings: guessed band order, a change mask
        that may be inverted.

    Raises:
        IngestError: naming the file at fault and the fix, for any problem with this pair.
    """
    with pixel_limit(options.max_image_pixels), ExitStack() as opened:
        return _build_scene(spec, options, store, opened)


def _build_scene(spec: PairSpec, options: IngestOptions, store: ImageStore, opened: ExitStack) -> BuiltScene:
    imagery = _read_pair(spec, options, opened)
    pre, post = imagery.pre, imagery.post
    warnings = _band_guess_warnings(spec, pre, post)
    height, width = pre.height, pre.width
    if min(width, height) < MIN_PAIR_SIDE:
        raise IngestError(
            spec.pre.describe(),
            f"pair {spec.name} is {width}x{height} px, smaller than the minimum of {MIN_PAIR_SIDE} px per side: "
            "no change in it could be segmented or described.",
            hint="remove the pair from the source, or ingest the full-size images it was cut from.",
        )
    gt_mask = open_mask(spec.mask, (height, width)) if spec.mask else None
    changes: list[tuple[ChangeSpec, MaskReader]] = [(c, open_mask(c.mask, (height, width))) for c in spec.changes]
    if spec.semantic is not None:
        changes += _semantic_changes(spec.semantic, ClassTable.load(options.class_table), (height, width))
    if spec.typed is not None:
        category = options.label_category or _known_source(spec.root)[1] or "building"
        changes += _typed_changes(spec.typed, category, (height, width))
    date_pre = spec.date_pre or pre.captured
    date_post = spec.date_post or post.captured
    if date_pre and date_post and date_post < date_pre:
        raise IngestError(
            spec.post.describe(),
            f"pair {spec.name}: the later image is dated {date_post}, before the earlier one ({date_pre}).",
            hint="swap the two dates (earlier image first), or fix the dates in the manifest.",
        )
    if gt_mask is None and changes:
        gt_mask = AnyMask([m for _, m in changes])
    # one pass over the whole pair (strip by strip): the scene's content id and its valid and changed pixels
    digest = _id_digest((height, width, 3), pre.georef())
    spool = store.workspace if store.workspace.is_dir() else None
    scan = scan_pair(imagery, digest.update, gt_mask, spool_dir=spool)
    if scan.valid_pixels == 0:
        raise IngestError(
            spec.pre.describe(),
            f"pair {spec.name} has no valid pixels: every pixel is nodata in one date or the other.",
            hint="check the nodata value of the rasters, or remove the pair.",
        )
    changed = scan.changed_pixels / scan.valid_pixels if gt_mask is not None else 0.0
    if changed >= INVERTED_MASK_FRACTION:
        warnings.append(
            IngestWarning(
                input=str(spec.mask) if spec.mask else spec.pre.describe(),
                warning=f"the change mask of pair {spec.name} marks {changed:.1%} of the image "
                "as changed: its convention may be inverted (0 = changed?). Fix: if so, invert the masks (changed "
                "pixels nonzero), remove these pairs with `craft-agent catalog remove --source "
                f"{spec.root}` and ingest again.",
            )
        )
    label_category = options.label_category or _known_source(spec.root)[1]
    if spec.mask is not None and gt_mask is not None and not changes and label_category:
        # a binary mask of one kind of change (building change datasets): its changes have that category
        changes = [(ChangeSpec(mask=spec.mask, category=label_category, attributes=(("label", "mask"),)), gt_mask)]
    notes = list(dict.fromkeys([*pre.notes, *post.notes]))  # both dates often say the same
    if imagery.stretch_note:
        notes.append(imagery.stretch_note)
    domain = Domain(spec.domain) if spec.domain else (Domain.RS if pre.georeferenced else options.domain)
    source = PairSource(
        root=str(spec.root),
        layout=spec.layout,
        pre=[_relative(spec.root, f) for f in spec.pre.files],
        post=[_relative(spec.root, f) for f in spec.post.files],
        mask=_relative(spec.root, spec.mask) if spec.mask else None,
        name=spec.name,
    )
    gsd = ground_sample_distance(pre, options.gsd, spec.root)
    windows = tile_windows(width, height, options.tile_size, options.tile_overlap)
    scene_id = digest.hexdigest()[:16]
    group = _group_of(spec, options, fallback=scene_id)
    pairs = []
    skipped = 0
    for window in windows:
        tiled = len(windows) > 1
        tile = imagery.rgb_tile(window)
        pair = _pair_for_window(spec, window, tiled, pre, tile, gt_mask, changes, options, store)
        if pair is None:
            skipped += 1
            continue
        pairs.append(
            pair.model_copy(
                update={
                    "domain": domain,
                    "source": source,
                    "group_id": group,
                    "date_pre": date_pre,
                    "date_post": date_post,
                    "gsd_m": gsd,
                    "notes": notes + pair.notes,
                }
            )
        )
    if not pairs:
        raise IngestError(
            spec.pre.describe(),
            f"pair {spec.name}: every tile is more than {options.max_nodata_fraction:.0%} nodata or one flat colour "
            "in both dates.",
            hint="check the nodata value and the overlap of the two dates.",
        )
    return BuiltScene(pairs=pairs, skipped_empty_tiles=skipped, warnings=warnings)


def _band_guess_warnings(spec: PairSpec, pre: DateImage, post: DateImage) -> list[IngestWarning]:
    """A warning when the RGB bands of either date were guessed: a wrong guess swaps the colours silently."""
    guessed = [raster for raster in (pre, post) if raster.band_guess]
    if not guessed:
        return []
    files = " and ".join(raster.label for raster in guessed)
    return [
        IngestWarning(
            input=guessed[0].label,
            warning=f"pair {spec.name} ({files}): {guessed[0].band_guess}. If the bands are B, G, R, NIR "
            "(PlanetScope order) the colours are swapped. Fix: ingest the source again with --bands 3,2,1; "
            "the new pairs replace these.",
        )
    ]


KNOWN_SOURCES: dict[str, tuple[float | None, str | None]] = {
    "levir": (0.5, "building"),
    "whu": (0.3, "building"),
    "s2looking": (None, "building"),
    "sysu": (0.5, None),
}
"""(ground sample distance in m/px, what the binary change labels mark) of well-known change-detection
datasets, matched in the source folder's name: LEVIR-CD (Google Earth, 0.5 m, buildings), WHU-CD (aerial,
0.3 m as distributed, buildings), S2Looking (buildings), SYSU-CD (0.5 m, several kinds of change)."""


def _known_source(root: Path) -> tuple[float | None, str | None]:
    name = dataset_name(root).lower()
    for key, value in KNOWN_SOURCES.items():
        if key in name:
            return value
    return None, None


def ground_sample_distance(raster: DateImage, given: float | None, root: Path) -> float | None:
    """Metres per pixel of a pair: from a georeference in metres or degrees, else ``given`` (``ingest --gsd``),
    else the known dataset named by the source folder (:data:`KNOWN_SOURCES`), else None."""
    if raster.crs is not None and raster.transform is not None:
        size_x, size_y = abs(raster.transform.a), abs(raster.transform.e)
        if raster.crs.is_geographic:
            # degrees: metres at the scene's centre latitude
            latitude = raster.transform.f + raster.transform.e * raster.height / 2
            size_x *= 111_320.0 * float(np.cos(np.radians(latitude)))
            size_y *= 110_574.0
            return round((size_x + size_y) / 2, 4)
        units = (raster.crs.linear_units or "").lower()
        if units in ("metre", "meter", "m", "metres", "meters"):
            return round((size_x + size_y) / 2, 4)
    if given is not None:
        return given
    return _known_source(root)[0]


def _semantic_changes(
    maps: tuple[Path, Path], table: ClassTable, expected_hw: tuple[int, int]
) -> list[tuple[ChangeSpec, MaskReader]]:
    """The known changes of a pair of semantic label maps, one per (class before, class after)."""
    before, after = (read_raster(path).pixels for path in maps)
    for path, pixels in zip(maps, (before, after), strict=True):
        if pixels.shape[:2] != expected_hw or pixels.ndim != 3 or pixels.shape[2] < 3:
            raise IngestError(
                str(path),
                f"label map {path} must be an RGB image of the pair's size {expected_hw[1]}x{expected_hw[0]}, "
                f"got shape {pixels.shape}.",
                hint="use the colour label maps made for these images (SECOND style), one per date.",
            )
    changes: list[tuple[ChangeSpec, MaskReader]] = []
    for change_type, category, old, new, mask in semantic_changes(table, before, after, str(maps[0])):
        spec = ChangeSpec(
            mask=maps[1],
            change_type=change_type.value,
            category=category,
            attributes=(("class_after", new), ("class_before", old), ("label", "semantic")),
        )
        changes.append((spec, ArrayMask(mask)))
    return changes


def _typed_changes(
    maps: tuple[Path, Path], category: str, expected_hw: tuple[int, int]
) -> list[tuple[ChangeSpec, MaskReader]]:
    """The known changes of a pair's (appeared, disappeared) binary masks: any non-zero pixel is labelled."""
    changes: list[tuple[ChangeSpec, MaskReader]] = []
    for path, change_type in zip(maps, (ChangeType.APPEAR, ChangeType.DISAPPEAR), strict=True):
        pixels = read_raster(path).pixels
        if pixels.shape[:2] != expected_hw:
            raise IngestError(
                str(path),
                f"label {path} is {pixels.shape[1]}x{pixels.shape[0]} px, "
                f"not the pair's {expected_hw[1]}x{expected_hw[0]}.",
                hint="use the labels made for these images (S2Looking: label1/ newly built, label2/ demolished).",
            )
        mask = np.asarray(pixels.any(axis=2) if pixels.ndim == 3 else pixels > 0)
        if mask.any():
            spec = ChangeSpec(
                mask=path, change_type=change_type.value, category=category, attributes=(("label", "typed"),)
            )
            changes.append((spec, ArrayMask(mask)))
    return changes


def _pair_for_window(
    spec: PairSpec,
    window: Window,
    tiled: bool,
    pre: DateImage,
    tile: RgbTile,
    gt_mask: MaskReader | None,
    changes: list[tuple[ChangeSpec, MaskReader]],
    options: IngestOptions,
    store: ImageStore,
) -> ImagePair | None:
    nodata = 1.0 - float(tile.valid.mean())
    if nodata > options.max_nodata_fraction:
        if not tiled:
            raise IngestError(
                spec.pre.describe(),
                f"pair {spec.name} is {nodata:.0%} nodata (limit {options.max_nodata_fraction:.0%}).",
                hint="check the nodata value of the rasters, or raise CRAFT_MAX_NODATA_FRACTION.",
            )
        return None
    tile_pre = np.ascontiguousarray(tile.pre)
    tile_post = np.ascontiguousarray(tile.post)
    tile_gt = gt_mask.read(window) if gt_mask is not None else None
    if tiled and _flat(tile_pre) and _flat(tile_post) and (tile_gt is None or not tile_gt.any()):
        return None  # nothing to see or refer to (and every such tile would be a duplicate of the others)
    georef = None
    if pre.crs is not None and pre.transform is not None:
        transform = window_transform(pre.transform, window)
        georef = GeoReference(crs=crs_to_text(pre.crs), transform=tuple(transform)[:6])
    gt_changes = []
    for change, mask in changes:
        tile_mask = mask.read(window)
        if tiled and not tile_mask.any():
            continue
        gt_changes.append(
            GroundTruthChange(
                change_type=ChangeType(change.change_type) if change.change_type else None,
                category=change.category,
                mask=RLEMask.from_array(tile_mask),
                position=None if tiled else change.position,
                expressions=list(change.expressions),
                attributes=dict(change.attributes),
            )
        )
    notes = [f"{nodata:.1%} of the pixels are nodata"] if nodata > 0 else []
    return ImagePair(
        id=pair_id_of(tile_pre, tile_post, georef),
        name=f"{spec.name}@{window.col_off},{window.row_off}" if tiled else spec.name,
        domain=Domain.RS,
        width=window.width,
        height=window.height,
        pre=store.put(tile_pre),
        post=store.put(tile_post),
        source=PairSource(root="", layout=spec.layout, pre=[], post=[], name=spec.name),
        group_id="",
        georef=georef,
        tile=TileWindow(
            col_off=window.col_off,
            row_off=window.row_off,
            width=window.width,
            height=window.height,
            scene_width=pre.width,
            scene_height=pre.height,
        )
        if tiled
        else None,
        gt_mask=RLEMask.from_array(tile_gt) if tile_gt is not None else None,
        gt_changes=gt_changes,
        notes=notes,
    )


def _flat(image: np.ndarray) -> bool:
    """True when every pixel has the same colour."""
    return bool((image == image[:1, :1]).all())


def ingest(
    src: Path,
    catalog: Catalog,
    store: ImageStore,
    options: IngestOptions,
    progress: ProgressCallback | None = None,
) -> IngestSummary:
    """Ingest every pair found in ``src`` into the catalog.

    Args:
        src: a folder in one of the recognised layouts, a collection of such folders, or a manifest.
        catalog: where pair records and this run's failures are written.
        store: where normalised images are written (content-addressed).
        options: how to read and normalise (see :class:`IngestOptions`).
        progress: optional callback (done, total, name).

    Returns:
        The run's summary: pairs added, pairs already present, failures with reasons.

    Raises:
        IngestError: only when the source as a whole is unusable (missing, empty, no layout).
    """
    discovery: Discovery = discover(src)
    summary = IngestSummary(source=str(src), layout=discovery.layout, ignored_files=discovery.ignored)
    summary.workspace = str(store.workspace)
    summary.failed.extend(discovery.failures)
    config = {
        "source": str(src),
        "layout": discovery.layout,
        "options": {k: (v.value if isinstance(v, Domain) else v) for k, v in options.__dict__.items()},
    }
    earlier = _earlier_pairs(catalog, discovery)
    seen: dict[str, str] = {}
    with StageRun(catalog, "ingest", config, summary, progress) as run:
        for spec in run.items(discovery.specs, name=lambda spec: spec.name):
            built = run.attempt(
                spec.pre.describe(),
                functools.partial(build_scene, spec, options, store),
                what=f"reading pair {spec.name} (check that both files open in an image viewer)",
            )
            if built is not None:
                _add_scene(catalog, spec, built, earlier, seen, summary)
    return summary


def _add_scene(
    catalog: Catalog,
    spec: PairSpec,
    built: BuiltScene,
    earlier: dict[tuple[Path, ...], list[str]],
    seen: dict[str, str],
    summary: IngestSummary,
) -> None:
    """The pairs of one read scene into the catalog (a tiled scene gives several), counted in ``summary``."""
    pairs = built.pairs
    summary.warnings.extend(built.warnings)
    summary.skipped_empty_tiles += built.skipped_empty_tiles
    _replace_earlier(catalog, spec, earlier.get(pairs[0].source.files(), []), pairs, summary)
    if len(pairs) > 1:
        summary.tiled_scenes += 1
    for pair in pairs:
        if pair.id in seen:
            summary.failed.append(
                Failure(
                    input=spec.pre.describe(),
                    error=f"pair {pair.name} has the same content as pair {seen[pair.id]} in this source; "
                    "it was not ingested twice. Fix: remove the duplicate copy from the source.",
                )
            )
            continue
        seen[pair.id] = pair.name
        summary.present_ids.append(pair.id)
        if catalog.add_pair(pair):
            summary.ingested += 1
            summary.pair_ids.append(pair.id)
        else:
            summary.skipped += 1
        if pair.gt_mask is not None:
            summary.with_ground_truth += 1


def _earlier_pairs(catalog: Catalog, discovery: Discovery) -> dict[tuple[Path, ...], list[str]]:
    """Pairs already in the catalog from the folders of this source, by their image files."""
    roots = {os.path.abspath(spec.root) for spec in discovery.specs}
    found: dict[tuple[Path, ...], list[str]] = {}
    for pair_id, source in catalog.pair_sources():
        if os.path.abspath(source.root) in roots:
            found.setdefault(source.files(), []).append(pair_id)
    return found


def _replace_earlier(
    catalog: Catalog, spec: PairSpec, earlier: list[str], pairs: list[ImagePair], summary: IngestSummary
) -> None:
    """Remove the pairs an earlier ingest made from the same files when these now give other pairs (other
    --bands, tiling or nodata settings), so a place is not in the catalog twice; audited ones are kept."""
    new_ids = {pair.id for pair in pairs}
    stale = [pair_id for pair_id in earlier if pair_id not in new_ids]
    if not stale:
        return
    try:
        summary.replaced += catalog.remove_pairs(stale).pairs
    except CatalogError as exc:
        summary.warnings.append(
            IngestWarning(
                input=spec.pre.describe(),
                warning=f"pair {spec.name} now gives other pairs than when it was ingested before; the "
                f"{len(stale)} earlier pair(s) are kept because {exc.message} Fix: remove them with `craft-agent "
                f"catalog remove --pair ID --force` ({', '.join(stale[:5])}), or keep both.",
            )
        )
