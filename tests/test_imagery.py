from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

from craft_agent.errors import IngestError
from craft_agent.imagery.normalize import align_to, select_rgb, stretch_pair, tile_windows
from craft_agent.imagery.raster import (
    Raster,
    RasterSource,
    Window,
    date_from_name,
    open_mask,
    read_band_set,
    read_geo_raster,
    read_mask,
    read_plain_image,
)
from tests.data import save_png, write_geotiff


def _raster(pixels: np.ndarray, names: list[str], crs: str | None = None, transform: Affine | None = None) -> Raster:
    return Raster(
        pixels=pixels,
        valid=None,
        crs=CRS.from_user_input(crs) if crs else None,
        transform=transform,
        band_names=names,
        captured=None,
        label="test",
    )


def test_select_rgb_rules() -> None:
    pixels = np.arange(5 * 2 * 2).reshape(2, 2, 5).astype(np.uint16)
    sentinel = select_rgb(_raster(pixels, ["B02", "B03", "B04", "B08", "B11"]))
    assert sentinel.band_names == ["B04", "B03", "B02"]
    assert np.array_equal(sentinel.pixels[..., 0], pixels[..., 2])
    interp = select_rgb(_raster(pixels[..., :3], ["blue", "green", "red"]))
    assert interp.band_names == ["red", "green", "blue"]
    explicit = select_rgb(_raster(pixels, [f"band{i}" for i in range(1, 6)]), bands=(5, 4, 3))
    assert np.array_equal(explicit.pixels, pixels[..., [4, 3, 2]])
    grey = select_rgb(_raster(pixels[..., :1], ["band1"]))
    assert grey.pixels.shape[2] == 3 and "grey" in grey.notes[0]
    with pytest.raises(IngestError, match="--bands"):
        select_rgb(_raster(pixels, [f"band{i}" for i in range(1, 6)]))
    with pytest.raises(IngestError, match="5 band"):
        select_rgb(_raster(pixels, ["a"] * 5), bands=(6, 1, 1))


def test_joint_stretch_keeps_a_real_brightening_between_dates() -> None:
    rng = np.random.default_rng(0)
    pre = rng.integers(1000, 2000, size=(32, 32, 3)).astype(np.uint16)
    post = (pre * 1.5).astype(np.uint16)
    valid = np.ones((32, 32), dtype=bool)
    pre8, post8, note = stretch_pair(pre, post, valid, (2, 98))
    assert pre8.dtype == np.uint8 and note and "both dates" in note
    assert post8.mean() > pre8.mean() + 40  # a per-image stretch would have erased this difference
    same_pre, _, none = stretch_pair(pre.astype(np.uint8), post.astype(np.uint8), valid, (2, 98))
    assert none is None and np.array_equal(same_pre, pre.astype(np.uint8))


@pytest.mark.parametrize(("width", "height", "size", "overlap"), [(100, 80, 128, 16), (3000, 1500, 1024, 128)])
def test_tiles_cover_the_image_with_full_size_tiles(width: int, height: int, size: int, overlap: int) -> None:
    windows = tile_windows(width, height, size, overlap)
    covered = np.zeros((height, width), dtype=bool)
    for w in windows:
        assert w.col_off + w.width <= width and w.row_off + w.height <= height
        assert (w.width, w.height) == (min(size, width), min(size, height))
        covered[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = True
    assert covered.all()
    if width > size:
        assert len({w.col_off for w in windows}) == 4  # 0, 896, 1792, 1976 for 3000 px
    with pytest.raises(ValueError, match="overlap"):
        tile_windows(10, 10, 8, 8)


def test_reprojection_puts_the_later_image_on_the_earlier_grid(tmp_path: Path) -> None:
    # earlier image in UTM 31N, later image of the same place in geographic coordinates
    size = 64
    utm = Affine(10.0, 0.0, 448000.0, 0.0, -10.0, 5411000.0)
    pre = np.zeros((1, size, size), dtype=np.uint16)
    pre[0, 20:40, 20:40] = 1000
    write_geotiff(tmp_path / "pre.tif", pre, crs="EPSG:32631", transform=utm)
    lons, lats = warp_transform("EPSG:32631", "EPSG:4326", [448000.0, 448640.0], [5411000.0, 5410360.0])
    geo = Affine((lons[1] - lons[0]) / size, 0.0, lons[0], 0.0, (lats[1] - lats[0]) / size, lats[0])
    write_geotiff(tmp_path / "post.tif", pre, crs="EPSG:4326", transform=geo)
    reference = read_geo_raster(tmp_path / "pre.tif")
    aligned = align_to(reference, read_geo_raster(tmp_path / "post.tif"))
    assert aligned.pixels.shape == reference.pixels.shape
    assert aligned.crs == reference.crs and aligned.transform == reference.transform
    assert any("reprojected" in n for n in aligned.notes)
    inside = aligned.pixels[22:38, 22:38, 0]
    assert inside.mean() > 900  # the bright square landed where it is in the earlier image
    assert aligned.pixels[:10, :10, 0].mean() < 100


def test_non_overlapping_rasters_are_refused(tmp_path: Path) -> None:
    data = np.ones((3, 16, 16), dtype=np.uint8)
    write_geotiff(tmp_path / "a.tif", data)
    write_geotiff(tmp_path / "b.tif", data, crs="EPSG:4326", transform=Affine(0.001, 0, 100.0, 0, -0.001, 10.0))
    with pytest.raises(IngestError, match="does not overlap"):
        align_to(read_geo_raster(tmp_path / "a.tif"), read_geo_raster(tmp_path / "b.tif"))


def test_plain_image_alpha_is_nodata_and_masks_follow_conventions(tmp_path: Path) -> None:
    rgba = np.full((8, 8, 4), 200, dtype=np.uint8)
    rgba[:2, :, 3] = 0
    raster = read_plain_image(save_png(tmp_path / "a.png", rgba))
    assert raster.pixels.shape == (8, 8, 3) and raster.valid is not None
    assert int((~raster.valid).sum()) == 16
    ones = np.zeros((8, 8), dtype=np.uint8)
    ones[0, 0] = 1
    assert read_mask(save_png(tmp_path / "m01.png", ones), (8, 8)).sum() == 1
    faint = np.full((8, 8), 100, dtype=np.uint8)
    faint[1, 1] = 255
    assert read_mask(save_png(tmp_path / "m255.png", faint), (8, 8)).sum() == 1  # > 127, like MTRefSeg
    with pytest.raises(IngestError, match="8x8"):
        read_mask(tmp_path / "m01.png", (4, 4))


def test_dates_from_names() -> None:
    assert date_from_name("T31UDQ_20170829T105019_B02.tif") == date(2017, 8, 29)
    assert date_from_name("train_386_0512_0768.png") is None
    assert date_from_name("x_20171399.png") is None
    # old Sentinel-2 granule names hold the production time, which is not the capture date
    assert date_from_name("S2A_OPER_MSI_L1C_TL_EPA__20161227T091305_A001222_T22LHH_B02.tif") is None


def test_raster_source_reads_windows_bands_and_decimated_views_of_the_whole_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    bands = rng.integers(0, 4000, size=(4, 90, 120), dtype=np.uint16)
    bands[:, :10, :10] = 0
    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4500000.0)
    path = write_geotiff(tmp_path / "scene.tif", bands, transform=transform, nodata=0)
    whole = read_geo_raster(path)
    source = RasterSource.open(path)
    assert (source.width, source.height, source.count, source.dtype) == (120, 90, 4, np.uint16)
    assert source.georef() == whole.georef() and source.masked == [True]
    with source:  # files kept open between reads
        window = source.read(Window(5, 8, 40, 30), bands=[2, 1, 0])
    assert np.array_equal(window.pixels, whole.pixels[8:38, 5:45][..., [2, 1, 0]])
    assert window.valid is not None and np.array_equal(window.valid, whole.valid_mask()[8:38, 5:45])
    assert window.transform == transform @ Affine.translation(5, 8) and window.band_names == ["band3", "band2", "band1"]
    decimated = source.read(out_shape=(30, 40))
    assert decimated.pixels.shape == (30, 40, 4) and decimated.transform == transform @ Affine.scale(3, 3)
    assert np.array_equal(decimated.pixels[5, 7], whole.pixels[16, 22])  # nearest: the centre of each 3x3 cell
    # a band set reads as read_band_set reads it (valid where every file is, not any band as in one file)
    files = [write_geotiff(tmp_path / "set" / f"B0{i + 1}.tif", bands[i : i + 1], nodata=0) for i in range(4)]
    names = ["B01", "B02", "B03", "B04"]
    stacked = RasterSource.open_band_set(files, names).read(Window(5, 8, 40, 30), bands=[3, 0])
    assert np.array_equal(stacked.pixels, whole.pixels[8:38, 5:45][..., [3, 0]])
    assert np.array_equal(stacked.valid_mask(), read_band_set(files, names).valid_mask()[8:38, 5:45])


def test_raster_masks_are_read_by_window_with_the_convention_of_the_whole_mask(tmp_path: Path) -> None:
    faint = np.full((1, 40, 50), 100, dtype=np.uint8)
    faint[0, 35, 45] = 255  # one 255 far from the window read below: > 127 holds for the whole mask
    ones = np.zeros((1, 40, 50), dtype=np.uint8)
    ones[0, 2:6, 3:9] = 1
    oscd = ones + 1  # OSCD's labels: 1 no change, 2 change
    window = Window(0, 0, 20, 20)
    for name, data in (("faint", faint), ("ones", ones), ("oscd", oscd)):
        path = write_geotiff(tmp_path / f"{name}.tif", data)
        mask = open_mask(path, (40, 50))
        assert np.array_equal(mask.read(window), read_mask(path, (40, 50))[window.slices()])
    assert not open_mask(tmp_path / "faint.tif", (40, 50)).read(window).any()
    assert open_mask(tmp_path / "ones.tif", (40, 50)).read(window).sum() == 24
    assert open_mask(tmp_path / "oscd.tif", (40, 50)).read(window).sum() == 24
    assert read_mask(save_png(tmp_path / "oscd.png", oscd[0]), (40, 50)).sum() == 24
    with pytest.raises(IngestError, match=r"mask .* is 50x40 but its images are 60x40"):
        open_mask(tmp_path / "ones.tif", (40, 60))
