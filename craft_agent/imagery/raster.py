"""Reading imagery into arrays: plain images through Pillow, GeoTIFF and other rasters through rasterio.

Whatever the file, a read gives a :class:`Raster`: pixels (H, W, bands) in their native dtype, a validity
mask (False on nodata), the georeference when there is one, band names and a capture date when the file
says. Band selection to RGB and the 8-bit stretch happen afterwards (see ``normalize``), jointly for both
dates of a pair.

Scenes too large to hold whole (a Sentinel-2 tile is 10980 x 10980 px) are opened as a :class:`RasterSource`,
which reads its header first and then any window, or the whole raster decimated, on request; ground-truth
masks are read the same way through a :class:`MaskReader`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from PIL import Image, UnidentifiedImageError
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from craft_agent.errors import IngestError
from craft_agent.models import GeoReference

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".img", ".vrt"}
PLAIN_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif"}
IMAGE_SUFFIXES = RASTER_SUFFIXES | PLAIN_SUFFIXES

_S2_PRODUCTION_NAME = re.compile(r"^S2[ABCD]_OPER_", re.IGNORECASE)
_DATE_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?:T\d{6})?(?!\d)")

STRIP_PIXELS = 1 << 23
"""Pixels per strip (about 8 M: 760 rows of a Sentinel-2 tile) when a large raster is scanned from top to bottom."""


@dataclass(frozen=True)
class Window:
    """A window of an image in pixels."""

    col_off: int
    row_off: int
    width: int
    height: int

    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) to cut this window out of an (H, W, ...) array."""
        return slice(self.row_off, self.row_off + self.height), slice(self.col_off, self.col_off + self.width)


def row_strips(width: int, height: int) -> list[Window]:
    """Full-width windows of at most :data:`STRIP_PIXELS` (at least one row each), top to bottom, without overlap."""
    rows = max(1, STRIP_PIXELS // max(width, 1))
    return [Window(0, row, width, min(rows, height - row)) for row in range(0, height, rows)]


class Grid(Protocol):
    """What alignment needs to know of an image: its size, georeference and name."""

    @property
    def label(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def crs(self) -> CRS | None: ...
    @property
    def transform(self) -> Affine | None: ...
    @property
    def georeferenced(self) -> bool: ...


class Georeferenced:
    """``georeferenced`` and ``georef()`` of anything with ``crs`` and ``transform`` (None without georeference)."""

    crs: CRS | None
    transform: Affine | None

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None and self.transform is not None

    def georef(self) -> GeoReference | None:
        if self.crs is None or self.transform is None:
            return None
        return GeoReference(crs=crs_to_text(self.crs), transform=tuple(self.transform)[:6])


@dataclass
class Raster(Georeferenced):
    """One date's imagery as read from disk.

    Attributes:
        pixels: array (H, W, bands) in the file's dtype.
        valid: bool (H, W), False where every band is nodata; None when the file has no nodata.
        crs / transform: georeference, both None for plain images or rasters without one.
        band_names: one name per band ("red", "B04", "band3"...).
        captured: capture date when the file name or tags give one.
        label: how to name this raster in messages (its path).
        band_guess: what was assumed about the bands when nothing in the file said which is which (the
            user should hear of it: a wrong guess swaps the colours), else None.
    """

    pixels: np.ndarray
    valid: np.ndarray | None
    crs: CRS | None
    transform: Affine | None
    band_names: list[str]
    captured: date | None
    label: str
    notes: list[str] = field(default_factory=list)
    band_guess: str | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def valid_mask(self) -> np.ndarray:
        if self.valid is None:
            return np.ones((self.height, self.width), dtype=bool)
        return self.valid


def crs_to_text(crs: CRS) -> str:
    """EPSG:XXXX when the CRS has a code, else its WKT."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def date_from_name(name: str) -> date | None:
    """The first YYYYMMDD date in a file name (Sentinel-2 style ``..._20170829T105019_B02.tif``).

    Old-format Sentinel-2 granules (``S2A_OPER_MSI_L1C_TL_..._20161227T091305_...``) carry the
    PRODUCTION time, not the sensing time, in their name: no date is taken from those.
    """
    if _S2_PRODUCTION_NAME.match(name):
        return None
    match = _DATE_IN_NAME.search(name)
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _date_from_tags(tags: dict[str, str]) -> date | None:
    value = tags.get("TIFFTAG_DATETIME") or tags.get("ACQUISITIONDATETIME") or tags.get("DATE_ACQUIRED")
    if not value:
        return None
    for pattern in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(value.strip()[: len(datetime.now().strftime(pattern))], pattern).date()
        except ValueError:
            continue
    return date_from_name(value.replace("-", "").replace(":", ""))


def check_readable(path: Path) -> None:
    """Refuse missing, empty or unreadable files with a message that names the file and the fix.

    Raises:
        IngestError: when the file cannot be read.
    """
    if not path.exists():
        raise IngestError(str(path), f"{path} does not exist.", hint="check the path or restore the file.")
    if not os.access(path, os.R_OK):
        raise IngestError(str(path), f"{path} is not readable (permission denied).", hint=f"run `chmod a+r {path}`.")
    if path.stat().st_size == 0:
        raise IngestError(str(path), f"{path} is an empty file (0 bytes).", hint="re-copy or re-download it.")


@contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Within the block, :func:`read_plain_image` refuses images of more than ``max_pixels`` pixels.

    This is Pillow's guard against decompression bombs (``PIL.Image.MAX_IMAGE_PIXELS``), set from the
    ``max_image_pixels`` setting while a pair is read and restored afterwards.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _too_many_pixels(path: Path) -> IngestError:
    limit = Image.MAX_IMAGE_PIXELS or 0
    Image.MAX_IMAGE_PIXELS = None  # only the header is read again, to say how large the image is
    try:
        with Image.open(path) as opened:
            width, height = opened.size
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return IngestError(
        str(path),
        f"{path} is {width}x{height} = {width * height:,} pixels, more than the {limit:,} pixels allowed for "
        "PNG/JPEG images (Pillow's guard against decompression bombs).",
        hint=f"convert it to a tiled GeoTIFF (e.g. `gdal_translate -co TILED=YES -co COMPRESS=DEFLATE {path} "
        f"{path.with_suffix('.tif').name}`): GeoTIFFs are read through rasterio, which has no such limit, and large "
        f"pairs are cut into tiles; or, if you trust the file, raise the limit with "
        f"CRAFT_MAX_IMAGE_PIXELS={width * height}.",
    )


def read_plain_image(path: Path) -> Raster:
    """Read a PNG/JPEG/... with Pillow. Alpha 0 counts as nodata; 16-bit greys keep their depth.

    Raises:
        IngestError: for corrupt or truncated files, unsupported modes, and images over Pillow's pixel limit
            (see :func:`pixel_limit`).
    """
    check_readable(path)
    try:
        with warnings.catch_warnings():
            # Pillow only warns up to twice its limit: refuse at the limit itself, as the setting says
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened:
            opened.load()
            mode = opened.mode
            image = opened.convert("RGBA") if mode == "P" else opened
            mode = "RGBA" if mode == "P" else mode
            array = np.asarray(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(path) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise IngestError(
            str(path),
            f"{path} is not a readable image ({exc}); the file is corrupt or truncated.",
            hint="re-copy or re-export the file, or remove the pair from the source.",
        ) from exc
    valid: np.ndarray | None = None
    if mode in ("RGBA", "LA"):
        valid = array[..., -1] > 0
        array = array[..., :-1]
        valid = None if valid.all() else valid
    if array.ndim == 2:
        array = array[..., None]
    if mode not in ("1", "L", "RGB", "RGBA", "LA", "I;16", "I;16B", "I", "F", "CMYK", "YCbCr"):
        raise IngestError(str(path), f"{path} has unsupported image mode {mode}.", hint="convert it to RGB PNG.")
    if mode in ("CMYK", "YCbCr"):
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    names = ["red", "green", "blue"] if array.shape[2] == 3 else [f"band{i + 1}" for i in range(array.shape[2])]
    return Raster(
        pixels=array.astype(np.uint8) if array.dtype == bool else array,
        valid=valid,
        crs=None,
        transform=None,
        band_names=names,
        captured=date_from_name(path.name),
        label=str(path),
    )


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Within the block, rasterio's errors on ``path`` become an :class:`IngestError` that names the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            yield
    except (RasterioIOError, rasterio.errors.RasterioError, OSError, ValueError) as exc:
        raise IngestError(
            str(path),
            f"{path} is not a readable raster ({exc}); the file is corrupt, truncated or not a GeoTIFF.",
            hint="re-copy the file or check it with `gdalinfo`/`rio info`.",
        ) from exc


def _band_names(dataset: Any) -> list[str]:
    names = []
    for index, (interp, description) in enumerate(zip(dataset.colorinterp, dataset.descriptions, strict=False)):
        if interp in (ColorInterp.red, ColorInterp.green, ColorInterp.blue):
            names.append(interp.name)
        elif description:
            names.append(description)
        else:
            names.append(f"band{index + 1}")
    return names


def _has_mask(dataset: Any) -> bool:
    """True when some pixels may be nodata: a nodata value, a mask band or an alpha band."""
    if dataset.nodata is not None:
        return True
    return any(MaskFlags.per_dataset in flags or MaskFlags.alpha in flags for flags in dataset.mask_flag_enums)


@dataclass
class RasterSource(Georeferenced):
    """A GDAL raster (GeoTIFF, JPEG 2000...) on disk, of which only the header is read up front: then any
    window, or the whole raster decimated, is read on request. One multi-band file, or a band set (one
    single-band file per band, Sentinel-2 style), read as one multi-band raster.

    Open with :meth:`open` or :meth:`open_band_set`. Reads work as they are (each opens the files); inside
    ``with source:`` the files stay open, so GDAL's block cache serves neighbouring windows.

    Attributes:
        files: the file, or the band files in band order.
        label: how to name the raster in messages (the file, or the band set's folder).
        width / height / dtype: the raster's size and pixel type.
        crs / transform: the georeference, both None without one (as :func:`read_geo_raster` gives them).
        band_names / captured: as :class:`Raster` has them.
        masked: per file, whether it can have nodata (nodata value, mask or alpha band).
    """

    files: list[Path]
    label: str
    width: int
    height: int
    dtype: np.dtype[Any]
    crs: CRS | None
    transform: Affine | None
    band_names: list[str]
    captured: date | None
    masked: list[bool]
    _opened: list[Any] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, path: Path) -> RasterSource:
        """The raster at ``path``, of which only the header is read.

        Raises:
            IngestError: for missing, empty or unreadable files.
        """
        check_readable(path)
        with _reading(path), rasterio.open(path) as dataset:
            crs, transform = dataset.crs, dataset.transform
            georeferenced = crs is not None and transform is not None and not transform.is_identity
            return cls(
                files=[path],
                label=str(path),
                width=dataset.width,
                height=dataset.height,
                dtype=np.dtype(dataset.dtypes[0]),
                crs=crs if georeferenced else None,
                transform=transform if georeferenced else None,
                band_names=_band_names(dataset),
                captured=date_from_name(path.name) or _date_from_tags(dataset.tags()),
                masked=[_has_mask(dataset)],
            )

    @classmethod
    def open_band_set(cls, files: list[Path], band_names: list[str]) -> RasterSource:
        """Single-band files of one date, one per band, as one raster (see :func:`read_band_set`).

        Raises:
            IngestError: when a file is unreadable or not single-band, or the files are on different grids.
        """
        sources = [cls.open(path) for path in files]
        first = sources[0]
        for source in sources:
            _check_band_file(source.files[0], len(source.band_names), source, first)
        return cls(
            files=list(files),
            label=str(files[0].parent),
            width=first.width,
            height=first.height,
            dtype=np.result_type(*(source.dtype for source in sources)),
            crs=first.crs,
            transform=first.transform,
            band_names=list(band_names),
            captured=first.captured,
            masked=[source.masked[0] for source in sources],
        )

    @property
    def count(self) -> int:
        """Number of bands."""
        return len(self.band_names)

    def __enter__(self) -> RasterSource:
        with _reading(self.files[0]):
            self._opened = [rasterio.open(path) for path in self.files]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for dataset in self._opened:
            dataset.close()
        self._opened = []

    def read(
        self, window: Window | None = None, bands: list[int] | None = None, out_shape: tuple[int, int] | None = None
    ) -> Raster:
        """Pixels and validity of a window, as :func:`read_geo_raster` gives them for the whole raster.

        Args:
            window: the pixels to read; None: the whole raster.
            bands: 0-based bands to read, in this order (repeats allowed); None: every band. Validity always
                comes from every band, as for a whole read.
            out_shape: (height, width) to decimate the window to (nearest neighbour, from overviews when the
                file has them); None: full resolution.

        Returns:
            A :class:`Raster` of the window, its transform that of the window (and of the decimated grid).

        Raises:
            IngestError: when the file cannot be read.
        """
        whole = window is None or window == Window(0, 0, self.width, self.height)
        window = window or Window(0, 0, self.width, self.height)
        bands = list(range(self.count)) if bands is None else bands
        height, width = out_shape or (window.height, window.width)
        area = rasterio.windows.Window(window.col_off, window.row_off, window.width, window.height)
        with ExitStack() as stack, _reading(self.files[0]):
            datasets = self._opened or [stack.enter_context(rasterio.open(path)) for path in self.files]
            if len(datasets) == 1:
                (dataset,) = datasets
                pixels = dataset.read([b + 1 for b in bands], window=area, out_shape=(len(bands), height, width))
                masks = []
                if self.masked[0]:
                    masks = [dataset.read_masks(window=area, out_shape=(dataset.count, height, width))]
            else:
                pixels = np.stack([datasets[b].read(1, window=area, out_shape=(height, width)) for b in bands])
                masks = [
                    dataset.read_masks(window=area, out_shape=(1, height, width))
                    for dataset, masked in zip(datasets, self.masked, strict=True)
                    if masked
                ]
        valid = np.logical_and.reduce([m.max(axis=0) > 0 for m in masks]) if masks else None
        transform = self.transform
        if transform is not None and not (whole and out_shape is None):
            scale = Affine.scale(window.width / width, window.height / height)
            transform = transform @ Affine.translation(window.col_off, window.row_off) @ scale
        return Raster(
            pixels=np.moveaxis(pixels, 0, -1),
            valid=None if valid is None or valid.all() else valid,
            crs=self.crs,
            transform=transform,
            band_names=[self.band_names[b] for b in bands],
            captured=self.captured,
            label=self.label,
        )


def read_geo_raster(path: Path) -> Raster:
    """Read a GeoTIFF (or any GDAL raster) with rasterio, with nodata, georeference and band names.

    Raises:
        IngestError: for unreadable rasters.
    """
    return RasterSource.open(path).read()


def read_raster(path: Path) -> Raster:
    """Read any supported image file, choosing the reader by extension."""
    if path.suffix.lower() in RASTER_SUFFIXES:
        return read_geo_raster(path)
    return read_plain_image(path)


def _check_band_file(path: Path, count: int, band: Grid, first: Grid) -> None:
    """Refuse a band-set file that is not single-band or not on the grid of the first one."""
    if count != 1:
        raise IngestError(
            str(path),
            f"{path} has {count} bands, but a band set needs one band per file.",
            hint="put multi-band files directly in the date folder instead of a band-set folder.",
        )
    if (band.height, band.width) != (first.height, first.width) or band.transform != first.transform:
        raise IngestError(
            str(path),
            f"{path} is {band.width}x{band.height} on another grid than {Path(first.label).name} "
            f"({first.width}x{first.height}); bands of different resolutions cannot be stacked.",
            hint="keep only bands of the same resolution (for Sentinel-2 the 10 m bands B02, B03, B04, B08).",
        )


def read_band_set(files: list[Path], band_names: list[str]) -> Raster:
    """Read single-band files of one date (Sentinel-2 style ``*_B02.tif``) into one multi-band raster.

    Raises:
        IngestError: when the files differ in size or grid, or one is not single-band.
    """
    rasters = [read_raster(f) for f in files]
    first = rasters[0]
    for raster, path in zip(rasters, files, strict=True):
        _check_band_file(path, raster.pixels.shape[2], raster, first)
    valid = None
    masks = [r.valid for r in rasters if r.valid is not None]
    if masks:
        valid = np.logical_and.reduce(masks)
    return Raster(
        pixels=np.concatenate([r.pixels for r in rasters], axis=2),
        valid=valid,
        crs=first.crs,
        transform=first.transform,
        band_names=band_names,
        captured=first.captured,
        label=str(files[0].parent),
    )


def _mask_of_other_size(path: Path, height: int, width: int, expected_hw: tuple[int, int]) -> IngestError:
    return IngestError(
        str(path),
        f"mask {path} is {width}x{height} but its images are {expected_hw[1]}x{expected_hw[0]}.",
        hint="use the mask made for these images, or resize it with nearest-neighbour to the image size.",
    )


def _mask_threshold(smallest: float, largest: float) -> float:
    """Values above this mark a change: 0/1 masks count nonzero, 1/2 masks 2 (OSCD's labels: 1 no change,
    2 change), 0/255 masks > 127 (MTRefSeg's convention)."""
    if largest <= 1:
        return 0
    if smallest >= 1 and largest <= 2:
        return 1
    return 127


def read_mask(path: Path, expected_hw: tuple[int, int]) -> np.ndarray:
    """Read a ground-truth mask as bool (H, W).

    Values 0/1 masks are read as nonzero, 1/2 masks as 2 (OSCD), 0/255 masks as > 127 (MTRefSeg's
    convention); colour masks count any channel.

    Raises:
        IngestError: when unreadable or not of the images' size.
    """
    raster = read_raster(path)
    values = raster.pixels.max(axis=2)
    if values.shape != expected_hw:
        raise _mask_of_other_size(path, values.shape[0], values.shape[1], expected_hw)
    return np.asarray(values > _mask_threshold(values.min(), values.max()))


class MaskReader(Protocol):
    """A ground-truth change mask (bool, the size of its pair) read window by window."""

    def read(self, window: Window) -> np.ndarray:
        """The mask's bool (window.height, window.width) values in ``window``."""
        ...


@dataclass
class ArrayMask:
    """A mask held whole in memory (plain images, semantic label maps)."""

    array: np.ndarray

    def read(self, window: Window) -> np.ndarray:
        return self.array[window.slices()]


@dataclass
class RasterMask:
    """A GDAL raster mask read window by window, with the threshold its values over the whole mask call for."""

    source: RasterSource
    threshold: float

    def read(self, window: Window) -> np.ndarray:
        return np.asarray(self.source.read(window).pixels.max(axis=2) > self.threshold)


@dataclass
class AnyMask:
    """The union of masks: changed where any of them is (a pair's known changes without a mask of its own)."""

    masks: list[MaskReader]

    def read(self, window: Window) -> np.ndarray:
        return np.asarray(np.logical_or.reduce([mask.read(window) for mask in self.masks]))


def open_mask(path: Path, expected_hw: tuple[int, int]) -> MaskReader:
    """A ground-truth mask read as :func:`read_mask` reads it: GDAL rasters window by window (after one
    strip-by-strip pass for the smallest and largest values, which pick the convention), others whole.

    Raises:
        IngestError: when unreadable or not of the images' size.
    """
    if path.suffix.lower() not in RASTER_SUFFIXES:
        return ArrayMask(read_mask(path, expected_hw))
    source = RasterSource.open(path)
    if (source.height, source.width) != expected_hw:
        raise _mask_of_other_size(path, source.height, source.width, expected_hw)
    with source:
        ranges = [
            (float(p.min()), float(p.max()))
            for p in (source.read(s).pixels for s in row_strips(source.width, source.height))
        ]
    return RasterMask(source, _mask_threshold(min(r[0] for r in ranges), max(r[1] for r in ranges)))
