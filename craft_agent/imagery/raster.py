"""Reading imagery into arrays: plain images through Pillow, GeoTIFF and other rasters through rasterio.

Whatever the file, a read gives a :class:`Raster`: pixels (H, W, bands) in their native dtype, a validity
mask (False on nodata), the georeference when there is one, band names and a capture date when the file
says. Band selection to RGB and the 8-bit stretch happen afterwards (see ``normalize``), jointly for both
dates of a pair.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image, UnidentifiedImageError
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from craft_agent.errors import IngestError
from craft_agent.models import GeoReference

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".img", ".vrt"}
PLAIN_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif"}
IMAGE_SUFFIXES = RASTER_SUFFIXES | PLAIN_SUFFIXES

_S2_PRODUCTION_NAME = re.compile(r"^S2[ABCD]_OPER_", re.IGNORECASE)
_DATE_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?:T\d{6})?(?!\d)")


@dataclass
class Raster:
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

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None and self.transform is not None

    def georef(self) -> GeoReference | None:
        if self.crs is None or self.transform is None:
            return None
        return GeoReference(crs=crs_to_text(self.crs), transform=tuple(self.transform)[:6])

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


def read_geo_raster(path: Path) -> Raster:
    """Read a GeoTIFF (or any GDAL raster) with rasterio, with nodata, georeference and band names.

    Raises:
        IngestError: for unreadable rasters.
    """
    check_readable(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as dataset:
                pixels = dataset.read()
                masks = dataset.read_masks() if dataset.nodata is not None or _has_mask(dataset) else None
                crs = dataset.crs
                transform = dataset.transform
                interps = list(dataset.colorinterp)
                descriptions = list(dataset.descriptions)
                tags = dataset.tags()
    except (RasterioIOError, rasterio.errors.RasterioError, OSError, ValueError) as exc:
        raise IngestError(
            str(path),
            f"{path} is not a readable raster ({exc}); the file is corrupt, truncated or not a GeoTIFF.",
            hint="re-copy the file or check it with `gdalinfo`/`rio info`.",
        ) from exc
    georeferenced = crs is not None and transform is not None and not transform.is_identity
    valid = None
    if masks is not None:
        valid = masks.max(axis=0) > 0
        valid = None if valid.all() else valid
    names = []
    for index, (interp, description) in enumerate(zip(interps, descriptions, strict=False)):
        if interp in (ColorInterp.red, ColorInterp.green, ColorInterp.blue):
            names.append(interp.name)
        elif description:
            names.append(description)
        else:
            names.append(f"band{index + 1}")
    return Raster(
        pixels=np.moveaxis(pixels, 0, -1),
        valid=valid,
        crs=crs if georeferenced else None,
        transform=transform if georeferenced else None,
        band_names=names,
        captured=date_from_name(path.name) or _date_from_tags(tags),
        label=str(path),
    )


def _has_mask(dataset: rasterio.DatasetReader) -> bool:
    from rasterio.enums import MaskFlags

    return any(MaskFlags.per_dataset in flags or MaskFlags.alpha in flags for flags in dataset.mask_flag_enums)


def read_raster(path: Path) -> Raster:
    """Read any supported image file, choosing the reader by extension."""
    if path.suffix.lower() in RASTER_SUFFIXES:
        return read_geo_raster(path)
    return read_plain_image(path)


def read_band_set(files: list[Path], band_names: list[str]) -> Raster:
    """Read single-band files of one date (Sentinel-2 style ``*_B02.tif``) into one multi-band raster.

    Raises:
        IngestError: when the files differ in size or grid, or one is not single-band.
    """
    rasters = [read_raster(f) for f in files]
    first = rasters[0]
    for raster, path in zip(rasters, files, strict=True):
        if raster.pixels.shape[2] != 1:
            raise IngestError(
                str(path),
                f"{path} has {raster.pixels.shape[2]} bands, but a band set needs one band per file.",
                hint="put multi-band files directly in the date folder instead of a band-set folder.",
            )
        if raster.pixels.shape[:2] != first.pixels.shape[:2] or raster.transform != first.transform:
            raise IngestError(
                str(path),
                f"{path} is {raster.width}x{raster.height} on another grid than {files[0].name} "
                f"({first.width}x{first.height}); bands of different resolutions cannot be stacked.",
                hint="keep only bands of the same resolution (for Sentinel-2 the 10 m bands B02, B03, B04, B08).",
            )
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


def read_mask(path: Path, expected_hw: tuple[int, int]) -> np.ndarray:
    """Read a ground-truth mask as bool (H, W).

    Values 0/1 masks are read as nonzero, 0/255 masks as > 127 (MTRefSeg's convention); colour masks
    count any channel.

    Raises:
        IngestError: when unreadable or not of the images' size.
    """
    raster = read_raster(path)
    values = raster.pixels.max(axis=2)
    if values.shape != expected_hw:
        raise IngestError(
            str(path),
            f"mask {path} is {values.shape[1]}x{values.shape[0]} but its images are {expected_hw[1]}x{expected_hw[0]}.",
            hint="use the mask made for these images, or resize it with nearest-neighbour to the image size.",
        )
    if values.max() <= 1:
        return np.asarray(values > 0)
    return np.asarray(values > 127)
