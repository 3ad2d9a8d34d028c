from __future__ import annotations

import importlib
import json
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine
from PIL import Image
from rasterio.warp import transform as warp_transform

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.errors import IngestError
from craft_agent.imagery import IngestOptions, discover, ingest
from craft_agent.imagery.ingest import BuiltScene, build_scene
from craft_agent.imagery.raster import RasterSource, Window
from tests.data import (
    make_bad_corpus,
    make_bad_manifest,
    make_band_set_source,
    make_folder_source,
    make_geotiff_source,
    make_large_geotiff_source,
    make_mtrefseg_source,
    save_png,
    scene,
    uint16_pair,
    unprivileged_command,
    write_geotiff,
)


def test_folder_layout_with_masks_and_aliases(tmp_path: Path, catalog: Catalog, store: ImageStore) -> None:
    src = make_folder_source(tmp_path / "levir", pairs=2)
    summary = ingest(src, catalog, store, IngestOptions())
    assert (summary.ingested, summary.skipped, summary.failed) == (2, 0, [])
    pairs = {p.name: p for p in catalog.iter_pairs()}
    _, post, mask = scene(1)
    assert np.array_equal(store.load(pairs["p1"].post), post)
    assert pairs["p1"].gt_mask is not None and np.array_equal(pairs["p1"].gt_mask.to_array(), mask)
    assert pairs["p1"].source.pre == ["A/p1.png"] and pairs["p1"].source.mask == "label/p1.png"
    other = make_folder_source(tmp_path / "prepost", pairs=1, pre="pre", post="post", masks="mask")
    assert discover(other).specs[0].mask == other / "mask" / "p0.png"


def test_reingest_adds_nothing_and_reports_skipped(tmp_path: Path, catalog: Catalog, store: ImageStore) -> None:
    src = make_folder_source(tmp_path / "src", pairs=3)
    first = ingest(src, catalog, store, IngestOptions())
    second = ingest(src, catalog, store, IngestOptions())
    assert (first.ingested, second.ingested, second.skipped) == (3, 0, 3)
    assert catalog.count_pairs() == 3
    images = list((store.workspace / "images").rglob("*.png"))
    assert len(images) == 6  # stored once each, content-addressed


def test_geotiff_16bit_multiband_with_dates_from_tags(tmp_path: Path, catalog: Catalog, store: ImageStore) -> None:
    summary = ingest(make_geotiff_source(tmp_path / "geo"), catalog, store, IngestOptions(domain="ns"))
    assert summary.ingested == 1 and summary.failed == []
    pair = next(catalog.iter_pairs())
    assert pair.domain == "rs"  # georeferenced imagery is remote sensing whatever the default
    assert pair.georef is not None and pair.georef.crs == "EPSG:32631"
    assert pair.georef.transform == (10.0, 0.0, 500000.0, 0.0, -10.0, 4500000.0)
    assert (pair.date_pre, pair.date_post) == (date(2020, 1, 5), date(2021, 6, 10))
    assert any("4 unnamed bands" in n for n in pair.notes) and any("stretched uint16" in n for n in pair.notes)
    post = store.load(pair.post)
    assert post[8:24, 30:50].min() == 255  # the changed square (value 3000) is at the top of the stretch


def test_sentinel2_band_sets(tmp_path: Path, catalog: Catalog, store: ImageStore) -> None:
    summary = ingest(make_band_set_source(tmp_path / "s2"), catalog, store, IngestOptions())
    assert summary.ingested == 1 and summary.failed == []
    pair = next(catalog.iter_pairs())
    assert pair.name == "city" and len(pair.source.pre) == 4
    assert any("B04/B03/B02" in n for n in pair.notes)
    assert (pair.date_pre, pair.date_post) == (date(2018, 1, 1), date(2019, 3, 1))
    assert pair.gt_mask is not None and pair.gt_mask.area == 16 * 20


def test_mtrefseg_layout_keeps_expressions_and_per_expression_masks(
    tmp_path: Path, catalog: Catalog, store: ImageStore
) -> None:
    summary = ingest(make_mtrefseg_source(tmp_path / "mt"), catalog, store, IngestOptions())
    assert summary.layout == "mtrefseg" and summary.ingested == 2 and summary.failed == []
    pair = next(p for p in catalog.iter_pairs() if p.name == "s0")
    assert [c.expressions for c in pair.gt_changes] == [
        ["the red square that appeared"],
        ["the blue car that was taken away"],
    ]
    assert pair.gt_changes[1].mask.is_empty  # a no-target expression keeps its empty mask
    assert pair.gt_mask is not None and pair.gt_mask.area == scene(10)[2].sum()


def test_oscd_as_distributed_through_a_manifest_of_band_folders(
    tmp_path: Path, catalog: Catalog, store: ImageStore
) -> None:
    """OSCD keeps each city's bands in imgs_1_rect/ imgs_2_rect/ and its 1/2 labels (2 = change) in another
    tree: a manifest row names the two band folders and the label raster."""
    src = make_band_set_source(tmp_path / "s2")
    root = tmp_path / "oscd"
    for date_folder, oscd_folder in (("pre", "imgs_1_rect"), ("post", "imgs_2_rect")):
        for band in sorted((src / date_folder / "city").iterdir()):
            target = root / "images" / "city" / oscd_folder / f"{band.stem.rsplit('_', 1)[1]}.tif"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(band.read_bytes())
    changed = np.asarray(Image.open(src / "mask" / "city.png")) > 127
    write_geotiff(root / "labels" / "city" / "cm" / "city-cm.tif", (changed + 1).astype(np.uint8)[None], crs=None)
    (root / "manifest.csv").write_text(
        "id,pre,post,mask\ncity,images/city/imgs_1_rect,images/city/imgs_2_rect,labels/city/cm/city-cm.tif\n"
    )
    summary = ingest(root, catalog, store, IngestOptions())
    assert summary.ingested == 1 and summary.failed == []
    pair = next(catalog.iter_pairs())
    assert len(pair.source.pre) == 4 and any("B04/B03/B02" in n for n in pair.notes)
    assert pair.gt_mask is not None and pair.gt_mask.area == int(changed.sum()) == 16 * 20


def test_manifest_with_known_changes_groups_and_dates(tmp_path: Path, catalog: Catalog, store: ImageStore) -> None:
    root = tmp_path / "m"
    pre, post, mask = scene(5)
    save_png(root / "x" / "pre.png", pre)
    save_png(root / "x" / "post.png", post)
    save_png(root / "x" / "change0.png", mask)
    row = {
        "id": "site-7",
        "pre": "x/pre.png",
        "post": "x/post.png",
        "domain": "ns",
        "group": "street-7",
        "date_pre": "2019-05-01",
        "date_post": "2023-06-15",
        "changes": [
            {
                "change_type": "appear",
                "category": "vehicle",
                "mask": "x/change0.png",
                "position": "top-left",
                "description": "the red car in the top-left that appeared",
            }
        ],
        "generator": {"ignored": True},
    }
    (root / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    summary = ingest(root, catalog, store, IngestOptions())
    assert summary.layout == "manifest" and summary.ingested == 1
    pair = next(catalog.iter_pairs())
    assert (pair.name, pair.domain, pair.group_id) == ("site-7", "ns", "street-7")
    change = pair.gt_changes[0]
    assert (change.change_type, change.category, change.position) == ("appear", "vehicle", "top-left")
    assert change.expressions == ["the red car in the top-left that appeared"]
    assert pair.gt_mask is not None and np.array_equal(pair.gt_mask.to_array(), mask)
    csv_root = tmp_path / "csv"
    save_png(csv_root / "a.png", pre)
    save_png(csv_root / "b.png", post)
    (csv_root / "pairs.csv").write_text("id,pre,post,domain\nc1,a.png,b.png,ns\n")
    from_csv = ingest(csv_root / "pairs.csv", catalog, store, IngestOptions())
    assert from_csv.ingested == 0 and from_csv.skipped == 1  # same pixels as site-7: same pair id


def test_large_georeferenced_pair_is_tiled_with_tile_georeference(
    tmp_path: Path, catalog: Catalog, store: ImageStore
) -> None:
    pre, post, _ = uint16_pair(3, size=300, count=3)
    transform = Affine(0.5, 0.0, 1000.0, 0.0, -0.5, 2000.0)
    write_geotiff(tmp_path / "big" / "pre" / "scene.tif", pre, transform=transform)
    write_geotiff(tmp_path / "big" / "post" / "scene.tif", post, transform=transform)
    options = IngestOptions(tile_size=128, tile_overlap=16)
    summary = ingest(tmp_path / "big", catalog, store, options)
    assert summary.tiled_scenes == 1 and summary.ingested == 9  # starts 0, 112, 172 on each axis
    tiles = list(catalog.iter_pairs())
    assert len({t.group_id for t in tiles}) == 1  # one scene group: splits must never separate tiles
    tile = next(t for t in tiles if t.tile and (t.tile.col_off, t.tile.row_off) == (112, 172))
    assert (tile.width, tile.height, tile.tile.scene_width) == (128, 128, 300)
    assert tile.georef is not None and tile.georef.transform[2] == pytest.approx(1000.0 + 112 * 0.5)
    assert tile.georef.transform[5] == pytest.approx(2000.0 - 172 * 0.5)
    assert tile.name == "scene@112,172"


def test_group_pattern_groups_crops_of_one_tile(tmp_path: Path, catalog: Catalog, store: ImageStore) -> None:
    for index, name in enumerate(["t1_0000_0000", "t1_0000_0256", "t2_0000_0000"]):
        pre, post, _ = scene(50 + index)
        save_png(tmp_path / "crops" / "A" / f"{name}.png", pre)
        save_png(tmp_path / "crops" / "B" / f"{name}.png", post)
    ingest(tmp_path / "crops", catalog, store, IngestOptions(group_pattern=r"^(.+)_\d{4}_\d{4}$"))
    assert sorted(p.group_id for p in catalog.iter_pairs()) == ["t1", "t1", "t2"]


def test_bad_input_corpus_gives_one_clear_error_per_bad_pair(
    tmp_path: Path, catalog: Catalog, store: ImageStore
) -> None:
    src, cases, good = make_bad_corpus(tmp_path, unreadable=unprivileged_command() == [])
    assert len(cases) >= 14
    summary = ingest(src, catalog, store, IngestOptions())
    assert summary.ingested == good
    assert len(summary.failed) == len(cases), [f.input for f in summary.failed]
    unmatched = list(summary.failed)
    for case in cases:
        match = next((f for f in unmatched if case.input_contains in f.input and case.error_contains in f.error), None)
        assert match is not None, f"no clear failure for {case.kind}: {[f.as_dict() for f in unmatched]}"
        assert "Fix:" in match.error, f"{case.kind}: the error does not say what to do: {match.error}"
        unmatched.remove(match)
    # and the run is recorded as complete, failures included
    run = catalog.runs("ingest")[-1]
    assert run["finished_at"] is not None and len(catalog.failures(run["id"])) == len(cases)


def test_bad_manifest_rows_fail_one_by_one(tmp_path: Path, catalog: Catalog, store: ImageStore) -> None:
    manifest, cases, good = make_bad_manifest(tmp_path / "bm")
    summary = ingest(manifest, catalog, store, IngestOptions())
    assert summary.ingested == good and len(summary.failed) == len(cases)
    for case in cases:
        assert any(case.input_contains in f.input and case.error_contains in f.error for f in summary.failed), case


def test_unusable_sources_raise_with_a_fix(tmp_path: Path, catalog: Catalog, store: ImageStore) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="no image pairs found") as error:
        ingest(tmp_path / "empty", catalog, store, IngestOptions())
    assert error.value.hint and "A/ and B/" in error.value.hint
    with pytest.raises(IngestError, match="does not exist"):
        ingest(tmp_path / "nowhere", catalog, store, IngestOptions())
    (tmp_path / "empty_dates" / "A").mkdir(parents=True)
    (tmp_path / "empty_dates" / "B").mkdir()
    with pytest.raises(IngestError, match="hold no images"):
        ingest(tmp_path / "empty_dates", catalog, store, IngestOptions())


def test_post_dated_before_pre_is_refused(tmp_path: Path, catalog: Catalog, store: ImageStore) -> None:
    pre, post, _ = scene(9)
    save_png(tmp_path / "s" / "pre" / "x.png", pre)
    save_png(tmp_path / "s" / "post" / "x.png", post)
    (tmp_path / "s" / "manifest.jsonl").write_text(
        json.dumps({"pre": "pre/x.png", "post": "post/x.png", "date_pre": "2022-01-01", "date_post": "2020-01-01"})
    )
    summary = ingest(tmp_path / "s", catalog, store, IngestOptions())
    assert summary.ingested == 0 and "swap" in summary.failed[0].error


def test_images_over_the_pixel_limit_say_the_limit_and_the_way_out(
    tmp_path: Path, catalog: Catalog, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from craft_agent.settings import load_settings

    monkeypatch.setenv("CRAFT_MAX_IMAGE_PIXELS", "4000")
    options = IngestOptions.from_settings(load_settings())
    assert options.max_image_pixels == 4000
    src = make_folder_source(tmp_path / "big", pairs=1)  # 64 x 64 = 4,096 pixels, the limit lowered below it
    before = Image.MAX_IMAGE_PIXELS
    summary = ingest(src, catalog, store, options)
    assert summary.ingested == 0 and len(summary.failed) == 1
    failure = summary.failed[0]
    assert failure.input == str(src / "A" / "p0.png")
    assert f"{src / 'A' / 'p0.png'} is 64x64 = 4,096 pixels, more than the 4,000 pixels allowed" in failure.error
    assert "tiled GeoTIFF" in failure.error and "CRAFT_MAX_IMAGE_PIXELS=4096" in failure.error
    assert "report this as a bug" not in failure.error
    assert before == Image.MAX_IMAGE_PIXELS  # the limit applies while a pair is read, not to the whole process
    # Over twice the limit Pillow raises an error of its own rather than a warning: the same answer.
    far_over = ingest(src, catalog, store, IngestOptions(max_image_pixels=1000)).failed[0].error
    assert "4,096 pixels, more than the 1,000 pixels allowed" in far_over and "GeoTIFF" in far_over
    assert ingest(src, catalog, store, IngestOptions(max_image_pixels=4096)).ingested == 1


def test_flat_and_nodata_tiles_of_a_large_scene_are_left_out_and_counted(
    tmp_path: Path, catalog: Catalog, store: ImageStore
) -> None:
    # 400 x 400, texture only in the top-left 100 x 100: 15 of the 16 tiles are one flat colour in both dates
    pre = np.zeros((400, 400, 3), np.uint8)
    post = pre.copy()
    textured, _, _ = scene(3, size=100)
    pre[:100, :100] = textured
    post[:100, :100] = textured[::-1]
    save_png(tmp_path / "flat" / "A" / "scene.png", pre)
    save_png(tmp_path / "flat" / "B" / "scene.png", post)
    options = IngestOptions(tile_size=128, tile_overlap=16)  # starts 0, 112, 224, 272 on each axis
    summary = ingest(tmp_path / "flat", catalog, store, options)
    assert (summary.ingested, summary.skipped_empty_tiles, summary.failed) == (1, 15, [])
    assert summary.to_json()["skipped_empty_tiles"] == 15
    # GeoTIFF with nodata: tiles entirely in the nodata right half are left out and counted as well
    bands, later, _ = uint16_pair(4, size=300, count=3)
    for data in (bands, later):
        data[:, :, 150:] = 0
    write_geotiff(tmp_path / "geo" / "pre" / "half.tif", bands, nodata=0)
    write_geotiff(tmp_path / "geo" / "post" / "half.tif", later, nodata=0)
    tiled = ingest(tmp_path / "geo", catalog, store, options)
    assert (tiled.ingested, tiled.skipped_empty_tiles, tiled.failed) == (6, 3, [])  # column 172 is all nodata


def test_tiny_pairs_are_refused_and_an_all_changed_mask_is_reported(
    tmp_path: Path, catalog: Catalog, store: ImageStore
) -> None:
    save_png(tmp_path / "s" / "A" / "dot.png", np.full((1, 1, 3), 90, np.uint8))
    save_png(tmp_path / "s" / "B" / "dot.png", np.full((1, 1, 3), 200, np.uint8))
    pre, post, _ = scene(8, changed=False)
    post[10:14, 10:14] = (230, 60, 40)
    inverted = np.ones((64, 64), bool)
    inverted[10:14, 10:14] = False  # 0 marks the change: the opposite convention
    save_png(tmp_path / "s" / "A" / "inverted.png", pre)
    save_png(tmp_path / "s" / "B" / "inverted.png", post)
    save_png(tmp_path / "s" / "label" / "inverted.png", inverted)
    summary = ingest(tmp_path / "s", catalog, store, IngestOptions())
    assert summary.ingested == 1 and len(summary.failed) == 1
    assert summary.failed[0].input == str(tmp_path / "s" / "A" / "dot.png")
    assert "pair dot is 1x1 px, smaller than the minimum of 32 px per side" in summary.failed[0].error
    assert len(summary.warnings) == 1
    warning = summary.warnings[0]
    assert warning.input == str(tmp_path / "s" / "label" / "inverted.png")
    assert warning.warning.startswith("the change mask of pair inverted marks 99.6% of the image as changed")
    assert "inverted (0 = changed?)" in warning.warning


def test_reingesting_with_other_bands_replaces_the_pairs_unless_they_are_audited(
    tmp_path: Path, catalog: Catalog, store: ImageStore
) -> None:
    src = make_geotiff_source(tmp_path / "planet")
    guessed = ingest(src, catalog, store, IngestOptions())
    assert [w.input for w in guessed.warnings] == [str(src / "pre" / "site.tif")]
    assert "(PlanetScope order) the colours are swapped" in guessed.warnings[0].warning
    swapped = ingest(src, catalog, store, IngestOptions(bands=(3, 2, 1)))
    assert (swapped.ingested, swapped.replaced, swapped.warnings) == (1, 1, [])
    assert [p.id for p in catalog.iter_pairs()] == swapped.pair_ids
    # Audited work is never thrown away by a re-ingest: the earlier pair stays and a warning says why.
    from craft_agent.models import RLEMask, Triplet, TripletState

    pair = catalog.get_pair(swapped.pair_ids[0])
    drafted = Triplet(
        id="t" * 16,
        pair_id=pair.id,
        mask=RLEMask.empty(pair.height, pair.width),
        expressions=["nothing changed"],
        change_type=None,
    )
    catalog.upsert_triplet(drafted)
    catalog.move_triplet(drafted.id, TripletState.QUEUED_FOR_AUDIT)
    catalog.move_triplet(drafted.id, TripletState.ACCEPTED)
    kept = ingest(src, catalog, store, IngestOptions(bands=(1, 2, 3)))
    assert (kept.ingested, kept.replaced, catalog.count_pairs()) == (1, 0, 2)
    assert "1 triplet(s) of pair" in kept.warnings[0].warning and "--force" in kept.warnings[0].warning


def _records(built: BuiltScene) -> list[dict[str, Any]]:
    return [pair.model_dump(mode="json", exclude={"created_at"}) for pair in built.pairs]


def _recording_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Window | None, tuple[int, int] | None]]:
    """Every RasterSource read from now on, as (window, out_shape); and no whole-image reader may run."""
    reads: list[tuple[Window | None, tuple[int, int] | None]] = []
    original = RasterSource.read

    def recording(self: RasterSource, window: Any = None, bands: Any = None, out_shape: Any = None) -> Any:
        reads.append((window, out_shape))
        return original(self, window, bands, out_shape)

    def refused(*args: Any) -> None:
        raise AssertionError("a windowed pair was read whole")

    monkeypatch.setattr(RasterSource, "read", recording)
    ingest_module = importlib.import_module("craft_agent.imagery.ingest")  # the package exports ingest()
    monkeypatch.setattr(ingest_module, "read_raster", refused)
    monkeypatch.setattr(ingest_module, "read_band_set", refused)
    return reads


def test_large_geotiff_pairs_are_read_window_by_window_into_the_same_records(
    tmp_path: Path, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_large_geotiff_source(tmp_path / "scene")  # 600 x 500, nodata corner, GeoTIFF 0/255 mask
    spec = discover(src).specs[0]
    options = IngestOptions(tile_size=256, tile_overlap=32, label_category="building")
    whole = build_scene(spec, options, store)
    assert len(whole.pairs) == 9 and whole.pairs[0].notes[-1] == "7.3% of the pixels are nodata"
    assert whole.pairs[1].gt_mask is not None and whole.pairs[1].gt_mask.area == 80 * 96
    assert whole.pairs[1].gt_changes[0].category == "building"
    reads = _recording_reads(monkeypatch)
    monkeypatch.setattr("craft_agent.imagery.raster.STRIP_PIXELS", 600 * 64)  # scanned in 8 strips
    windowed = build_scene(spec, replace(options, windowed_read_pixels=600 * 500 - 1), store)
    assert _records(windowed) == _records(whole)  # same ids, group, tiles, notes, masks and stored images
    assert (windowed.skipped_empty_tiles, windowed.warnings) == (whole.skipped_empty_tiles, whole.warnings)
    # Only the stretch sample reads a whole date (the scene is no larger than the sample: exact percentiles);
    # everything else is a strip or a tile, of both dates and of the mask.
    largest = [w for w, _ in reads if w is None or w.width * w.height > 256 * 256]
    assert len(largest) == 2 and all(w is not None and (w.width, w.height) == (600, 500) for w in largest)
    assert {(w.width, w.height) for w, _ in reads if w is not None} >= {(600, 64), (256, 256)}
    # Pairs within the threshold are read whole, as before.
    monkeypatch.undo()
    assert _records(build_scene(spec, replace(options, windowed_read_pixels=600 * 500), store)) == _records(whole)


def test_windowed_stretch_comes_from_a_decimated_read_of_both_dates(
    tmp_path: Path, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = discover(make_large_geotiff_source(tmp_path / "scene")).specs[0]
    options = IngestOptions(tile_size=256, tile_overlap=32)
    whole = build_scene(spec, options, store)
    reads = _recording_reads(monkeypatch)
    monkeypatch.setattr("craft_agent.imagery.normalize.STRETCH_SAMPLE_SIDE", 150)
    monkeypatch.setattr("craft_agent.imagery.raster.STRIP_PIXELS", 600 * 64)
    windowed = build_scene(spec, replace(options, windowed_read_pixels=1), store)
    assert sorted(shape for _, shape in reads if shape) == [(125, 150), (125, 150)]  # both dates, decimated 4x
    assert all(shape or (w is not None and w.width * w.height < 600 * 500) for w, shape in reads)
    assert any(n.endswith("of both dates (from both read decimated to 150x125)") for n in windowed.pairs[0].notes)
    for decimated, exact in zip(windowed.pairs, whole.pairs, strict=True):
        assert (decimated.name, decimated.gt_mask) == (exact.name, exact.gt_mask)
        for date_ in ("pre", "post"):
            diff = np.abs(store.load(getattr(decimated, date_)).astype(int) - store.load(getattr(exact, date_)))
            assert diff.mean() < 3 and np.percentile(diff, 99) <= 8  # percentiles of a 1/16 sample, close


def test_windowed_band_sets_and_reprojected_pairs_match_a_whole_read(
    tmp_path: Path, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = IngestOptions(tile_size=128, tile_overlap=16)
    windowed_options = replace(options, windowed_read_pixels=1)
    band_set = discover(make_band_set_source(tmp_path / "s2", size=200)).specs[0]
    assert _records(build_scene(band_set, windowed_options, store)) == _records(build_scene(band_set, options, store))
    # The later date in geographic coordinates: reprojected onto the earlier UTM grid tile by tile. GDAL's warper
    # approximates the transformation per chunk, so values agree within one grey level, but for a few pixels on
    # the edge of the later date's footprint (valid in one read, not in the other).
    size = 300
    rows, cols = np.mgrid[0:size, 0:size]
    smooth = (1000 + 400 * np.sin(cols / 23.0) * np.cos(rows / 31.0)).astype(np.uint16)
    bands = np.stack([smooth, smooth // 2 + 300, 2000 - smooth // 2])
    utm = Affine(10.0, 0.0, 448000.0, 0.0, -10.0, 5411000.0)
    write_geotiff(tmp_path / "geo" / "pre" / "x.tif", bands, transform=utm)
    lons, lats = warp_transform("EPSG:32631", "EPSG:4326", [448000.0, 451000.0], [5411000.0, 5408000.0])
    degrees = Affine((lons[1] - lons[0]) / size, 0.0, lons[0], 0.0, (lats[1] - lats[0]) / size, lats[0])
    write_geotiff(tmp_path / "geo" / "post" / "x.tif", bands, crs="EPSG:4326", transform=degrees)
    spec = discover(tmp_path / "geo").specs[0]
    whole = build_scene(spec, options, store)
    _recording_reads(monkeypatch)
    monkeypatch.setattr("craft_agent.imagery.raster.STRIP_PIXELS", size * 40)
    windowed = build_scene(spec, windowed_options, store)
    assert [p.name for p in windowed.pairs] == [p.name for p in whole.pairs] and len(whole.pairs) == 9
    assert any("reprojected onto the earlier image's grid" in n for n in windowed.pairs[0].notes)
    for tile, exact in zip(windowed.pairs, whole.pairs, strict=True):
        for date_ in ("pre", "post"):
            diff = np.abs(store.load(getattr(tile, date_)).astype(int) - store.load(getattr(exact, date_))).max(axis=2)
            assert (diff > 1).mean() < 0.002
