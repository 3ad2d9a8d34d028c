"""From two rasters as read to one co-registered 8-bit RGB pair.

Steps, in order: pick the RGB bands of each date; put the later image on the earlier one's grid
(reprojection when CRS or transform differ, refusal when they do not overlap); stretch deep data to
8 bits with percentiles computed over both dates together (so a real brightness change between dates
survives the stretch); cut large pairs into overlapping tiles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.warp import Resampling, reproject, transform_bounds

from craft_agent.errors import IngestError
from craft_agent.imagery.raster import Raster

_SENTINEL2_RGB = ("B04", "B03", "B02")
_LANDSAT_RGB = ("SR_B4", "SR_B3", "SR_B2")


def _normalise_band_name(name: str) -> str:
    match = re.fullmatch(r"[Bb](\d{1,2})([Aa]?)", name)
    if match:
        return f"B{int(match.group(1)):02d}{match.group(2).upper()}"
    return name


def select_rgb(raster: Raster, bands: tuple[int, int, int] | None = None) -> Raster:
    """Keep the red, green and blue bands, in that order.

    Rules: explicit 1-based ``bands`` win; then colour interpretation (red/green/blue); then
    Sentinel-2 or Landsat band names; then 3 bands as they are; a single band becomes grey RGB;
    4 bands without names are read as R, G, B, NIR (NAIP / stacked RGBN convention).

    Raises:
        IngestError: for band counts that cannot be mapped without ``bands``.
    """
    count = raster.pixels.shape[2]
    names = [_normalise_band_name(n) for n in raster.band_names]
    lowered = [n.lower() for n in names]
    guess = None
    if bands is not None:
        if max(bands) > count or min(bands) < 1:
            raise IngestError(
                raster.label,
                f"{raster.label} has {count} band(s); bands {bands} were requested.",
                hint=f"pass --bands with three indices between 1 and {count}.",
            )
        index = [b - 1 for b in bands]
        note = f"bands {bands} used as RGB"
    elif all(c in lowered for c in ("red", "green", "blue")):
        index = [lowered.index(c) for c in ("red", "green", "blue")]
        note = ""
    elif all(b in names for b in _SENTINEL2_RGB):
        index = [names.index(b) for b in _SENTINEL2_RGB]
        note = "Sentinel-2 B04/B03/B02 used as RGB"
    elif all(b in names for b in _LANDSAT_RGB):
        index = [names.index(b) for b in _LANDSAT_RGB]
        note = "Landsat SR_B4/SR_B3/SR_B2 used as RGB"
    elif count == 3:
        index, note = [0, 1, 2], ""
    elif count == 1:
        index, note = [0, 0, 0], "single band shown as grey"
    elif count == 4:
        index, note = [0, 1, 2], "4 unnamed bands read as R, G, B, NIR"
        guess = "its 4 bands carry no colour interpretation, so they were read as R, G, B, NIR (NAIP order)"
    else:
        raise IngestError(
            raster.label,
            f"{raster.label} has {count} band(s) ({', '.join(raster.band_names)}) and none is marked red, "
            "green or blue, so its RGB bands are unknown.",
            hint="pass --bands R,G,B with 1-based band numbers (e.g. --bands 4,3,2).",
        )
    notes = [*raster.notes, note] if note else list(raster.notes)
    return Raster(
        pixels=raster.pixels[..., index],
        valid=raster.valid,
        crs=raster.crs,
        transform=raster.transform,
        band_names=[raster.band_names[i] for i in index],
        captured=raster.captured,
        label=raster.label,
        notes=notes,
        band_guess=guess,
    )


def align_to(reference: Raster, moving: Raster) -> Raster:
    """Put ``moving`` on ``reference``'s pixel grid.

    Same grid: unchanged. Both georeferenced on different grids or CRSs: reprojected (bilinear) onto
    the reference grid, with pixels outside ``moving``'s footprint marked nodata. One georeferenced and
    one not: accepted as pixel-aligned only when the sizes agree. Neither: sizes must agree.

    Raises:
        IngestError: when the rasters do not overlap, or their sizes differ and nothing says how they align.
    """
    same_size = reference.pixels.shape[:2] == moving.pixels.shape[:2]
    if reference.georeferenced and moving.georeferenced:
        if same_size and reference.crs == moving.crs and reference.transform == moving.transform:
            return moving
        return _reproject(reference, moving)
    if same_size:
        if reference.georeferenced != moving.georeferenced:
            ungeo = moving if reference.georeferenced else reference
            note = f"{ungeo.label} has no georeference; taken as pixel-aligned with its partner"
            return _with_note(moving, note)
        return moving
    raise IngestError(
        moving.label,
        f"{reference.label} is {reference.width}x{reference.height} but {moving.label} is "
        f"{moving.width}x{moving.height}, and without georeference nothing says how they line up.",
        hint="crop or resample both dates to the same size, or use GeoTIFFs so they can be reprojected.",
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
    )


def _overlaps(reference: Raster, moving: Raster) -> bool:
    assert reference.transform is not None and moving.transform is not None
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


def _reproject(reference: Raster, moving: Raster) -> Raster:
    if not _overlaps(reference, moving):
        raise IngestError(
            moving.label,
            f"{moving.label} does not overlap {reference.label}: their footprints are disjoint "
            f"({moving.crs} vs {reference.crs}).",
            hint="pair images of the same place; check that each file carries the right CRS.",
        )
    height, width = reference.height, reference.width
    source = np.moveaxis(moving.pixels, -1, 0).astype(np.float32)
    destination = np.zeros((source.shape[0], height, width), dtype=np.float32)
    reproject(
        source=source,
        destination=destination,
        src_transform=moving.transform,
        src_crs=moving.crs,
        dst_transform=reference.transform,
        dst_crs=reference.crs,
        resampling=Resampling.bilinear,
    )
    coverage = np.zeros((1, height, width), dtype=np.uint8)
    reproject(
        source=moving.valid_mask().astype(np.uint8)[None],
        destination=coverage,
        src_transform=moving.transform,
        src_crs=moving.crs,
        dst_transform=reference.transform,
        dst_crs=reference.crs,
        resampling=Resampling.nearest,
    )
    pixels = np.moveaxis(destination, 0, -1)
    if np.issubdtype(moving.pixels.dtype, np.integer):
        info = np.iinfo(moving.pixels.dtype)
        pixels = np.clip(np.rint(pixels), info.min, info.max).astype(moving.pixels.dtype)
    valid = coverage[0] > 0
    return Raster(
        pixels=pixels,
        valid=None if valid.all() else valid,
        crs=reference.crs,
        transform=reference.transform,
        band_names=moving.band_names,
        captured=moving.captured,
        label=moving.label,
        notes=[*moving.notes, f"{moving.label} reprojected onto the earlier image's grid"],
    )


def stretch_pair(
    pre: np.ndarray, post: np.ndarray, valid: np.ndarray, percentiles: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Both dates as uint8 RGB. 8-bit data is kept as is; deeper data is stretched per band between
    the given percentiles of the valid pixels of BOTH dates, so radiometric differences between the
    dates are preserved.

    Returns:
        (pre_uint8, post_uint8, note or None when nothing was stretched).
    """
    if pre.dtype == np.uint8 and post.dtype == np.uint8:
        return pre, post, None
    low_pct, high_pct = percentiles
    out_pre = np.zeros(pre.shape, dtype=np.uint8)
    out_post = np.zeros(post.shape, dtype=np.uint8)
    for band in range(pre.shape[2]):
        values = np.concatenate([pre[..., band][valid], post[..., band][valid]]).astype(np.float64)
        if values.size == 0:
            continue
        low, high = np.percentile(values, [low_pct, high_pct])
        scale = 255.0 / max(high - low, 1e-9)
        for source, target in ((pre, out_pre), (post, out_post)):
            scaled = (source[..., band].astype(np.float64) - low) * scale
            target[..., band] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    note = f"stretched {pre.dtype} to 8 bits between percentiles {low_pct:g}-{high_pct:g} of both dates"
    return out_pre, out_post, note


@dataclass(frozen=True)
class Window:
    """A tile window in pixels."""

    col_off: int
    row_off: int
    width: int
    height: int


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
