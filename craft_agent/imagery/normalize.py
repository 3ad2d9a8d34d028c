"""From two rasters as read to one co-registered 8-bit RGB pair.

Steps, in order: pick the RGB bands of each date; put the later image on the earlier one's grid
(reprojection when CRS or transform differ, refusal when they do not overlap); stretch deep data to
8 bits with percentiles computed over both dates together (so a real brightness change between dates
survives the stretch); cut large pairs into overlapping tiles.

A pair is read one of two ways behind one interface, :class:`PairImagery`: whole (:class:`LoadedPair`),
or, for GDAL rasters too large for that, window by window (:class:`WindowedPair`): the stretch
percentiles then come from a decimated read of both dates, and each tile or strip reads only its own
window of each file, so a Sentinel-2 tile never sits whole in memory. A pair small enough to be read
either way gives the same tiles both ways.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, reproject, transform_bounds

from craft_agent.errors import IngestError
from craft_agent.imagery.raster import (
    Georeferenced,
    Grid,
    MaskReader,
    Raster,
    RasterSource,
    Window,
    row_strips,
)

_SENTINEL2_RGB = ("B04", "B03", "B02")
_LANDSAT_RGB = ("SR_B4", "SR_B3", "SR_B2")

STRETCH_SAMPLE_SIDE = 2048
"""Long side (px) of the decimated read of both dates that a windowed pair's stretch percentiles come from."""

BLOCK_CACHE_MB = 128
"""GDAL's block cache while a windowed pair is read: a row of tiles' blocks, far below GDAL's default 5% of RAM."""

SPOOL_BYTES = 64 << 20
"""While a pair is scanned, the later date's 8-bit rows wait in memory up to this size, past it on disk."""

REPROJECTION_MARGIN = 4
"""Source pixels read around a window's footprint when it is reprojected: the bilinear kernel's reach and slack."""


def _normalise_band_name(name: str) -> str:
    match = re.fullmatch(r"[Bb](\d{1,2})([Aa]?)", name)
    if match:
        return f"B{int(match.group(1)):02d}{match.group(2).upper()}"
    return name


@dataclass(frozen=True)
class RgbBands:
    """Which bands are red, green and blue (0-based), the note for the user, and what was guessed (or None)."""

    index: list[int]
    note: str
    guess: str | None = None


def rgb_bands(label: str, count: int, band_names: list[str], bands: tuple[int, int, int] | None = None) -> RgbBands:
    """The red, green and blue bands of a raster of ``count`` bands named ``band_names``.

    Rules: explicit 1-based ``bands`` win; then colour interpretation (red/green/blue); then
    Sentinel-2 or Landsat band names; then 3 bands as they are; a single band becomes grey RGB;
    4 bands without names are read as R, G, B, NIR (NAIP / stacked RGBN convention).

    Raises:
        IngestError: for band counts that cannot be mapped without ``bands``.
    """
    names = [_normalise_band_name(n) for n in band_names]
    lowered = [n.lower() for n in names]
    if bands is not None:
        if max(bands) > count or min(bands) < 1:
            raise IngestError(
                label,
                f"{label} has {count} band(s); bands {bands} were requested.",
                hint=f"pass --bands with three indices between 1 and {count}.",
            )
        return RgbBands([b - 1 for b in bands], f"bands {bands} used as RGB")
    if all(c in lowered for c in ("red", "green", "blue")):
        return RgbBands([lowered.index(c) for c in ("red", "green", "blue")], "")
    if all(b in names for b in _SENTINEL2_RGB):
        return RgbBands([names.index(b) for b in _SENTINEL2_RGB], "Sentinel-2 B04/B03/B02 used as RGB")
    if all(b in names for b in _LANDSAT_RGB):
        return RgbBands([names.index(b) for b in _LANDSAT_RGB], "Landsat SR_B4/SR_B3/SR_B2 used as RGB")
    if count == 3:
        return RgbBands([0, 1, 2], "")
    if count == 1:
        return RgbBands([0, 0, 0], "single band shown as grey")
    if count == 4:
        guess = "its 4 bands carry no colour interpretation, so they were read as R, G, B, NIR (NAIP order)"
        return RgbBands([0, 1, 2], "4 unnamed bands read as R, G, B, NIR", guess)
    raise IngestError(
        label,
        f"{label} has {count} band(s) ({', '.join(band_names)}) and none is marked red, "
        "green or blue, so its RGB bands are unknown.",
        hint="pass --bands R,G,B with 1-based band numbers (e.g. --bands 4,3,2).",
    )


def select_rgb(raster: Raster, bands: tuple[int, int, int] | None = None) -> Raster:
    """Keep the red, green and blue bands, in that order (see :func:`rgb_bands` for the rules).

    Raises:
        IngestError: for band counts that cannot be mapped without ``bands``.
    """
    rgb = rgb_bands(raster.label, raster.pixels.shape[2], raster.band_names, bands)
    return Raster(
        pixels=raster.pixels[..., rgb.index],
        valid=raster.valid,
        crs=raster.crs,
        transform=raster.transform,
        band_names=[raster.band_names[i] for i in rgb.index],
        captured=raster.captured,
        label=raster.label,
        notes=[*raster.notes, rgb.note] if rgb.note else list(raster.notes),
        band_guess=rgb.guess,
    )


def _alignment(reference: Grid, moving: Grid) -> tuple[bool, str | None]:
    """Whether ``moving`` must be reprojected onto ``reference``'s grid, and the note to keep (see :func:`align_to`).

    Raises:
        IngestError: when the rasters do not overlap, or their sizes differ and nothing says how they align.
    """
    same_size = (reference.height, reference.width) == (moving.height, moving.width)
    if reference.georeferenced and moving.georeferenced:
        if same_size and reference.crs == moving.crs and reference.transform == moving.transform:
            return False, None
        if not _overlaps(reference, moving):
            raise IngestError(
                moving.label,
                f"{moving.label} does not overlap {reference.label}: their footprints are disjoint "
                f"({moving.crs} vs {reference.crs}).",
                hint="pair images of the same place; check that each file carries the right CRS.",
            )
        return True, f"{moving.label} reprojected onto the earlier image's grid"
    if same_size:
        if reference.georeferenced != moving.georeferenced:
            ungeo = moving if reference.georeferenced else reference
            return False, f"{ungeo.label} has no georeference; taken as pixel-aligned with its partner"
        return False, None
    raise IngestError(
        moving.label,
        f"{reference.label} is {reference.width}x{reference.height} but {moving.label} is "
        f"{moving.width}x{moving.height}, and without georeference nothing says how they line up.",
        hint="crop or resample both dates to the same size, or use GeoTIFFs so they can be reprojected.",
    )


def align_to(reference: Raster, moving: Raster) -> Raster:
    """Put ``moving`` on ``reference``'s pixel grid.

    Same grid: unchanged. Both georeferenced on different grids or CRSs: reprojected (bilinear) onto
    the reference grid, with pixels outside ``moving``'s footprint marked nodata. One georeferenced and
    one not: accepted as pixel-aligned only when the sizes agree. Neither: sizes must agree.

    Raises:
        IngestError: when the rasters do not overlap, or their sizes differ and nothing says how they align.
    """
    reprojected, note = _alignment(reference, moving)
    if not reprojected:
        return _with_note(moving, note) if note else moving
    assert note is not None and moving.crs is not None and moving.transform is not None
    assert reference.crs is not None and reference.transform is not None
    pixels, valid = reproject_pixels(
        moving.pixels,
        moving.valid_mask(),
        (moving.crs, moving.transform),
        (reference.crs, reference.transform),
        (reference.height, reference.width),
    )
    return Raster(
        pixels=pixels,
        valid=None if valid.all() else valid,
        crs=reference.crs,
        transform=reference.transform,
        band_names=moving.band_names,
        captured=moving.captured,
        label=moving.label,
        notes=[*moving.notes, note],
        band_guess=moving.band_guess,
    )


def _with_note(raster: Raster, note: str) -> Raster:
    return Raster(
        pixels=raster.pixels,
        valid=raster.valid,
        crs=raster.crs,
        transform=raster.transform,
        band_names=raster.band_names,
        captured=raster.captured,
        label=raster.label,
        notes=[*raster.notes, note],
        band_guess=raster.band_guess,
    )


def _overlaps(reference: Grid, moving: Grid) -> bool:
    assert reference.transform is not None and moving.transform is not None and moving.crs is not None
    ref_left, ref_top = reference.transform @ (0, 0)
    ref_right, ref_bottom = reference.transform @ (reference.width, reference.height)
    mov_left, mov_top = moving.transform @ (0, 0)
    mov_right, mov_bottom = moving.transform @ (moving.width, moving.height)
    left, bottom, right, top = transform_bounds(
        moving.crs,
        reference.crs,
        min(mov_left, mov_right),
        min(mov_top, mov_bottom),
        max(mov_left, mov_right),
        max(mov_top, mov_bottom),
    )
    return not (
        right <= min(ref_left, ref_right)
        or left >= max(ref_left, ref_right)
        or top <= min(ref_top, ref_bottom)
        or bottom >= max(ref_top, ref_bottom)
    )


def reproject_pixels(
    pixels: np.ndarray,
    valid: np.ndarray,
    source: tuple[CRS, Affine],
    target: tuple[CRS, Affine],
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Warp (H, W, bands) ``pixels`` and their bool ``valid`` from the ``source`` (crs, transform) grid onto the
    ``target`` grid of ``shape`` (height, width).

    Returns:
        (pixels, valid) on the target grid: pixels bilinear and back in their own dtype, validity nearest
        neighbour, so target pixels outside the source's footprint are invalid.
    """
    height, width = shape
    stack = np.moveaxis(pixels, -1, 0).astype(np.float32)
    destination = np.zeros((stack.shape[0], height, width), dtype=np.float32)
    warp = {"src_crs": source[0], "src_transform": source[1], "dst_crs": target[0], "dst_transform": target[1]}
    reproject(source=stack, destination=destination, resampling=Resampling.bilinear, **warp)
    coverage = np.zeros((1, height, width), dtype=np.uint8)
    reproject(source=valid.astype(np.uint8)[None], destination=coverage, resampling=Resampling.nearest, **warp)
    warped = np.moveaxis(destination, 0, -1)
    if np.issubdtype(pixels.dtype, np.integer):
        info = np.iinfo(pixels.dtype)
        warped = np.clip(np.rint(warped), info.min, info.max).astype(pixels.dtype)
    return warped, coverage[0] > 0


StretchLimits = list[tuple[float, float] | None]
"""Per band, the values stretched to 0 and 255; None for a band without a valid value (stored black)."""


def stretch_limits(
    pre: np.ndarray, post: np.ndarray, valid: np.ndarray, percentiles: tuple[float, float]
) -> StretchLimits | None:
    """Per band, the given percentiles of the valid pixels of BOTH dates; None when both are 8-bit already."""
    if pre.dtype == np.uint8 and post.dtype == np.uint8:
        return None
    limits: StretchLimits = []
    for band in range(pre.shape[2]):
        values = np.concatenate([pre[..., band][valid], post[..., band][valid]]).astype(np.float64)
        if values.size == 0:
            limits.append(None)
            continue
        low, high = np.percentile(values, list(percentiles))
        limits.append((float(low), float(high)))
    return limits


def apply_stretch(pixels: np.ndarray, limits: StretchLimits | None) -> np.ndarray:
    """(H, W, bands) ``pixels`` as uint8, each band mapped linearly from its limits to 0-255 and clipped.

    ``limits`` None: the pixels are 8-bit already and come back as they are.
    """
    if limits is None:
        return pixels
    stretched = np.zeros(pixels.shape, dtype=np.uint8)
    for band, limit in enumerate(limits):
        if limit is None:
            continue
        low, high = limit
        scaled = pixels[..., band].astype(np.float64)
        scaled -= low  # in place: a strip of a Sentinel-2 tile holds one float copy per band, not five
        scaled *= 255.0 / max(high - low, 1e-9)
        np.rint(scaled, out=scaled)
        np.clip(scaled, 0, 255, out=scaled)
        stretched[..., band] = scaled
    return stretched


def _stretch_note(dtype: np.dtype, percentiles: tuple[float, float]) -> str:
    low_pct, high_pct = percentiles
    return f"stretched {dtype} to 8 bits between percentiles {low_pct:g}-{high_pct:g} of both dates"


def stretch_pair(
    pre: np.ndarray, post: np.ndarray, valid: np.ndarray, percentiles: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Both dates as uint8 RGB. 8-bit data is kept as is; deeper data is stretched per band between
    the given percentiles of the valid pixels of BOTH dates, so radiometric differences between the
    dates are preserved.

    Returns:
        (pre_uint8, post_uint8, note or None when nothing was stretched).
    """
    limits = stretch_limits(pre, post, valid, percentiles)
    if limits is None:
        return pre, post, None
    return apply_stretch(pre, limits), apply_stretch(post, limits), _stretch_note(pre.dtype, percentiles)


def tile_windows(width: int, height: int, size: int, overlap: int) -> list[Window]:
    """Overlapping windows covering a width x height image; one window when it fits in ``size``.

    The last row and column of windows are aligned to the image edge so every tile has full size.

    Raises:
        ValueError: when the overlap is not smaller than the tile size.
    """
    if overlap >= size:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile size {size}")
    if width <= size and height <= size:
        return [Window(0, 0, width, height)]

    def starts(extent: int) -> list[int]:
        if extent <= size:
            return [0]
        stride = size - overlap
        positions = list(range(0, extent - size, stride))
        positions.append(extent - size)
        return sorted(set(positions))

    return [Window(col, row, min(size, width), min(size, height)) for row in starts(height) for col in starts(width)]


def window_transform(transform: Affine, window: Window) -> Affine:
    """The affine transform of a window's top-left pixel."""
    return transform @ Affine.translation(window.col_off, window.row_off)


@dataclass(frozen=True)
class RgbTile:
    """One window of a pair as it is stored: 8-bit RGB of both dates (0 where invalid) and where both are valid."""

    pre: np.ndarray
    post: np.ndarray
    valid: np.ndarray


@dataclass
class WindowedDate(Georeferenced):
    """One date of a :class:`WindowedPair`: its raster on disk, the bands read as RGB, and the grid it is read on
    (its own, or the earlier date's when it is reprojected onto it: then ``onto_grid`` is True).

    Attributes:
        crs / transform / width / height: the grid windows are read on, as :func:`align_to` would leave them.
        notes: what the user should know (bands used, reprojection).
    """

    source: RasterSource
    rgb: RgbBands
    notes: list[str]
    crs: CRS | None
    transform: Affine | None
    width: int
    height: int
    onto_grid: bool = False

    @classmethod
    def of(cls, source: RasterSource, bands: tuple[int, int, int] | None) -> WindowedDate:
        """``source`` read on its own grid, with its RGB bands picked as :func:`select_rgb` picks them.

        Raises:
            IngestError: for band counts that cannot be mapped without ``bands``.
        """
        rgb = rgb_bands(source.label, source.count, source.band_names, bands)
        notes = [rgb.note] if rgb.note else []
        return cls(source, rgb, notes, source.crs, source.transform, source.width, source.height)

    @property
    def label(self) -> str:
        return self.source.label

    @property
    def captured(self) -> date | None:
        return self.source.captured

    @property
    def band_guess(self) -> str | None:
        return self.rgb.guess

    def read(self, window: Window, out_shape: tuple[int, int] | None = None) -> Raster:
        """The RGB bands and validity in ``window`` of this date's grid, decimated to ``out_shape`` when given.

        Raises:
            IngestError: when the file cannot be read.
        """
        if not self.onto_grid:
            return self.source.read(window, self.rgb.index, out_shape)
        assert self.crs is not None and self.transform is not None
        assert self.source.crs is not None and self.source.transform is not None
        height, width = out_shape or (window.height, window.width)
        target = window_transform(self.transform, window) @ Affine.scale(window.width / width, window.height / height)
        area = _footprint(self.source, self.crs, target, (height, width))
        if area is None:  # nothing of this date under the window
            empty = np.zeros((height, width, len(self.rgb.index)), dtype=self.source.dtype)
            return Raster(empty, np.zeros((height, width), bool), self.crs, target, [], self.captured, self.label)
        decimated = _decimated(area.width, area.height, max(height, width)) if out_shape else None
        moving = self.source.read(area, self.rgb.index, decimated)
        assert moving.transform is not None
        pixels, valid = reproject_pixels(
            moving.pixels, moving.valid_mask(), (self.source.crs, moving.transform), (self.crs, target), (height, width)
        )
        return Raster(
            pixels=pixels,
            valid=None if valid.all() else valid,
            crs=self.crs,
            transform=target,
            band_names=moving.band_names,
            captured=self.captured,
            label=self.label,
        )


DateImage = Raster | WindowedDate
"""One date of a pair as :class:`PairImagery` gives it: its grid, notes, capture date and band guess."""


def _decimated(width: int, height: int, side: int) -> tuple[int, int] | None:
    """(height, width) scaled so the long side is ``side``; None when it is no longer than that already."""
    if max(width, height) <= side:
        return None
    scale = side / max(width, height)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _footprint(source: RasterSource, crs: CRS, transform: Affine, shape: tuple[int, int]) -> Window | None:
    """The window of ``source`` under the grid (crs, transform, shape), with a margin; None when there is none."""
    assert source.crs is not None and source.transform is not None
    height, width = shape
    xs, ys = zip(*(transform @ corner for corner in ((0, 0), (width, 0), (0, height), (width, height))), strict=True)
    west, south, east, north = transform_bounds(crs, source.crs, min(xs), min(ys), max(xs), max(ys), densify_pts=21)
    inverse = ~source.transform
    cols, rows = zip(*(inverse @ (x, y) for x in (west, east) for y in (south, north)), strict=True)
    if not all(math.isfinite(v) for v in (*cols, *rows)):
        return Window(0, 0, source.width, source.height)
    col_off = max(0, math.floor(min(cols)) - REPROJECTION_MARGIN)
    row_off = max(0, math.floor(min(rows)) - REPROJECTION_MARGIN)
    col_end = min(source.width, math.ceil(max(cols)) + REPROJECTION_MARGIN)
    row_end = min(source.height, math.ceil(max(rows)) + REPROJECTION_MARGIN)
    if col_end <= col_off or row_end <= row_off:
        return None
    return Window(col_off, row_off, col_end - col_off, row_end - row_off)


def _rgb_tile(pre: np.ndarray, post: np.ndarray, valid: np.ndarray) -> RgbTile:
    return RgbTile(
        pre=np.where(valid[..., None], pre, 0).astype(np.uint8),
        post=np.where(valid[..., None], post, 0).astype(np.uint8),
        valid=valid,
    )


class PairImagery(Protocol):
    """Both dates of a pair on the earlier date's grid, read as 8-bit RGB windows.

    Attributes:
        pre / post: the dates (the later one as put on the earlier one's grid): grid, notes, band guess.
        stretch_note: what the 8-bit stretch did; None when nothing was stretched.
    """

    @property
    def pre(self) -> DateImage: ...
    @property
    def post(self) -> DateImage: ...
    @property
    def stretch_note(self) -> str | None: ...

    def rgb_tile(self, window: Window) -> RgbTile:
        """The 8-bit RGB of both dates in ``window``, 0 where either date is invalid.

        Raises:
            IngestError: when a file cannot be read.
        """
        ...

    def strips(self) -> list[Window]:
        """Full-width windows covering the pair top to bottom, without overlap: the order of a whole scan."""
        ...


@dataclass
class LoadedPair:
    """A pair read whole: aligned, stretched and zeroed where invalid in memory, then cut into windows."""

    pre: Raster
    post: Raster
    stretch_note: str | None
    tile: RgbTile

    @classmethod
    def of(cls, pre: Raster, post: Raster, percentiles: tuple[float, float]) -> LoadedPair:
        """``post`` put on ``pre``'s grid (see :func:`align_to`), both stretched together (:func:`stretch_pair`);
        both with their RGB bands selected already.

        Raises:
            IngestError: when the dates cannot be aligned.
        """
        post = align_to(pre, post)
        valid = pre.valid_mask() & post.valid_mask()
        pre_rgb, post_rgb, note = stretch_pair(pre.pixels, post.pixels, valid, percentiles)
        return cls(pre, post, note, _rgb_tile(pre_rgb, post_rgb, valid))

    def rgb_tile(self, window: Window) -> RgbTile:
        area = window.slices()
        return RgbTile(self.tile.pre[area], self.tile.post[area], self.tile.valid[area])

    def strips(self) -> list[Window]:
        return [Window(0, 0, self.pre.width, self.pre.height)]


@dataclass
class WindowedPair:
    """A pair read from its files window by window (see :func:`open_windowed_pair`)."""

    pre: WindowedDate
    post: WindowedDate
    limits: StretchLimits | None
    stretch_note: str | None

    def rgb_tile(self, window: Window) -> RgbTile:
        earlier, later = self.pre.read(window), self.post.read(window)
        valid = earlier.valid_mask() & later.valid_mask()
        return _rgb_tile(apply_stretch(earlier.pixels, self.limits), apply_stretch(later.pixels, self.limits), valid)

    def strips(self) -> list[Window]:
        return row_strips(self.pre.width, self.pre.height)


@contextmanager
def open_windowed_pair(
    pre: RasterSource, post: RasterSource, bands: tuple[int, int, int] | None, percentiles: tuple[float, float]
) -> Iterator[WindowedPair]:
    """Both dates of a pair, to be read window by window while the block lasts (the files stay open, GDAL's
    block cache is held to :data:`BLOCK_CACHE_MB`).

    Same rules as a whole read: RGB bands as :func:`select_rgb` picks them, the later date on the earlier
    one's grid as :func:`align_to` puts it (reprojected window by window), the stretch jointly over both
    dates; but its percentiles come from a read of both dates decimated to :data:`STRETCH_SAMPLE_SIDE` px on
    the long side (exact for pairs no larger than that).

    Raises:
        IngestError: for bands that cannot be mapped, dates that cannot be aligned, unreadable files.
    """
    earlier, later = WindowedDate.of(pre, bands), WindowedDate.of(post, bands)
    reprojected, note = _alignment(pre, post)
    if note:
        later.notes.append(note)
    if reprojected:
        later.crs, later.transform, later.width, later.height = pre.crs, pre.transform, pre.width, pre.height
        later.onto_grid = True
    with rasterio.Env(GDAL_CACHEMAX=BLOCK_CACHE_MB << 20), pre, post:  # rasterio takes bytes
        whole = Window(0, 0, pre.width, pre.height)
        sample = _decimated(pre.width, pre.height, STRETCH_SAMPLE_SIDE)
        first, second = earlier.read(whole, sample), later.read(whole, sample)
        limits = stretch_limits(first.pixels, second.pixels, first.valid_mask() & second.valid_mask(), percentiles)
        del first, second
        stretch_note = None
        if limits is not None:
            stretch_note = _stretch_note(pre.dtype, percentiles)
            if sample:
                stretch_note += f" (from both read decimated to {sample[1]}x{sample[0]})"
        yield WindowedPair(earlier, later, limits, stretch_note)


@dataclass(frozen=True)
class PairScan:
    """What one pass over a whole pair counted."""

    valid_pixels: int
    changed_pixels: int
    """Valid pixels that the ground-truth mask marks changed (0 without a mask)."""


def scan_pair(
    imagery: PairImagery,
    feed: Callable[[bytes], object],
    mask: MaskReader | None = None,
    spool_dir: Path | None = None,
) -> PairScan:
    """One pass over a pair, strip by strip: counts its valid and changed pixels, and feeds the 8-bit RGB bytes
    of the whole earlier image, then of the whole later image, to ``feed`` (a digest's ``update``), the bytes
    of the whole arrays in row order, so that a pair read window by window gets the content id of a whole read.

    The later date's bytes wait in a temporary file, in memory up to :data:`SPOOL_BYTES`, past that in
    ``spool_dir`` (default: the system's temporary folder).

    Raises:
        IngestError: when a file cannot be read.
    """
    valid_pixels = changed_pixels = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, dir=str(spool_dir) if spool_dir else None) as later:
        for strip in imagery.strips():
            tile = imagery.rgb_tile(strip)
            feed(np.ascontiguousarray(tile.pre).tobytes())
            later.write(np.ascontiguousarray(tile.post).tobytes())
            valid_pixels += int(np.count_nonzero(tile.valid))
            if mask is not None:
                changed_pixels += int(np.count_nonzero(mask.read(strip) & tile.valid))
        later.seek(0)
        while chunk := later.read(SPOOL_BYTES):
            feed(chunk)
    return PairScan(valid_pixels, changed_pixels)
