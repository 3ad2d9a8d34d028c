"""Test inputs made by code (seeded), so the suite runs offline and anyone can regenerate them.

``python -m tests.data OUT`` writes every fixture below into OUT for a look by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.export.importer import triplet_from_truth
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.models import (
    AuditRecord,
    BBox,
    ChangeCandidate,
    ChangeType,
    RLEMask,
    Triplet,
    TripletState,
    Verdict,
    triplet_id,
)
from craft_agent.synthetic import write_examples

SIZE = 64


def scene(seed: int, size: int = SIZE, changed: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small textured RGB pair with one bright square that appears, and its mask."""
    rng = np.random.default_rng(seed)
    pre = rng.integers(40, 120, size=(size, size, 3), dtype=np.uint8)
    post = pre.copy()
    mask = np.zeros((size, size), dtype=bool)
    if changed:
        y, x = rng.integers(4, size // 2, size=2)
        side = size // 4
        mask[y : y + side, x : x + side] = True
        post[mask] = (230, 60, 40)
    return pre, post, mask


def appeared(candidate_id: str, mask: np.ndarray, **fields: object) -> ChangeCandidate:
    """An appear candidate of pair ``p`` with this (bool) mask and its box; ``fields`` set the rest (source,
    scores...)."""
    ys, xs = np.nonzero(mask)
    return ChangeCandidate.model_validate(
        {
            "id": candidate_id,
            "pair_id": "p",
            "change_type": ChangeType.APPEAR,
            "box": BBox(x0=int(xs.min()), y0=int(ys.min()), x1=int(xs.max()) + 1, y1=int(ys.max()) + 1),
            "grid_cell": "center",
            "area": int(mask.sum()),
            "mask": RLEMask.from_array(mask),
            **fields,
        }
    )


def save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    Image.fromarray(array).save(path)
    return path


def make_folder_source(root: Path, pairs: int = 3, pre: str = "A", post: str = "B", masks: str = "label") -> Path:
    """A LEVIR-CD style folder (A/ B/ label/) with ``pairs`` pairs."""
    for index in range(pairs):
        a, b, m = scene(index)
        save_png(root / pre / f"p{index}.png", a)
        save_png(root / post / f"p{index}.png", b)
        save_png(root / masks / f"p{index}.png", m)
    return root


def write_geotiff(
    path: Path,
    bands: np.ndarray,
    crs: str | None = "EPSG:32631",
    transform: Affine | None = None,
    nodata: float | None = None,
    colorinterp: bool = False,
    captured: str | None = None,
) -> Path:
    """Write (count, H, W) ``bands`` as a GeoTIFF (no georeference when crs is None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count, height, width = bands.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": bands.dtype.name,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = CRS.from_user_input(crs)
        profile["transform"] = transform or Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4500000.0)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(bands)
        if captured:
            dataset.update_tags(TIFFTAG_DATETIME=captured)
        if colorinterp and count >= 3:
            from rasterio.enums import ColorInterp

            # Blue, green, red order on disk: reading must honour the interpretation, not the order.
            dataset.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red] + [ColorInterp.undefined] * (
                count - 3
            )
    return path


def uint16_pair(seed: int, size: int = SIZE, count: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 16-bit multi-band pair (reflectance-like values around 500-3000) with one changed square."""
    rng = np.random.default_rng(seed)
    pre = rng.integers(500, 1500, size=(count, size, size), dtype=np.uint16)
    post = pre.copy()
    mask = np.zeros((size, size), dtype=bool)
    mask[8:24, 30:50] = True
    post[:, mask] = 3000
    return pre, post, mask


def make_geotiff_source(root: Path, size: int = SIZE) -> Path:
    """pre/ post/ mask/ with 4-band uint16 GeoTIFFs in UTM, dates in the TIFF tags."""
    pre, post, mask = uint16_pair(0, size)
    write_geotiff(root / "pre" / "site.tif", pre, captured="2020:01:05 10:30:00")
    write_geotiff(root / "post" / "site.tif", post, captured="2021:06:10 10:30:00")
    save_png(root / "mask" / "site.png", mask)
    return root


def make_band_set_source(root: Path, size: int = SIZE) -> Path:
    """Sentinel-2 style: pre/<name>/*_B02.tif ... one file per band, 16-bit, with a mask."""
    pre, post, mask = uint16_pair(1, size)
    for folder, data, stamp in (("pre", pre, "20180101T100000"), ("post", post, "20190301T100000")):
        for band_name, band in zip(("B02", "B03", "B04", "B08"), data, strict=True):
            write_geotiff(root / folder / "city" / f"T31UDQ_{stamp}_{band_name}.tif", band[None])
    save_png(root / "mask" / "city.png", mask)
    return root


def make_large_geotiff_source(root: Path, width: int = 600, height: int = 500) -> Path:
    """pre/ post/ mask/ for the windowed reader: 4-band uint16 GeoTIFFs with a nodata corner (0) and a rectangle
    that brightens, and its 0/255 GeoTIFF mask. Several tiles and strips once a test lowers the tile size,
    the windowed-read threshold and the strip size."""
    rng = np.random.default_rng(12)
    pre = rng.integers(500, 1500, size=(4, height, width), dtype=np.uint16)
    post = pre.copy()
    mask = np.zeros((1, height, width), dtype=np.uint8)
    mask[0, 100:180, 200:320] = 255
    post[:, 100:180, 200:320] += 1500
    for data in (pre, post):
        data[:, :60, :80] = 0
    write_geotiff(root / "pre" / "scene.tif", pre, nodata=0, captured="2020:05:01 10:00:00")
    write_geotiff(root / "post" / "scene.tif", post, nodata=0, captured="2021:05:01 10:00:00")
    write_geotiff(root / "mask" / "scene.tif", mask)
    return root


def make_mtrefseg_source(root: Path) -> Path:
    """An MTRefSeg split: A/ B/ masks/ referring_expression/<sample_id>.json."""
    for index in range(2):
        a, b, m = scene(10 + index)
        save_png(root / "A" / f"s{index}.png", a)
        save_png(root / "B" / f"s{index}.png", b)
        save_png(root / "masks" / f"s{index}_0.png", m)
        save_png(root / "masks" / f"s{index}_1.png", np.zeros_like(m))
        sample = {
            "img_A": f"s{index}.png",
            "img_B": f"s{index}.png",
            "referring_expressions": ["the red square that appeared", "the blue car that was taken away"],
            "mask": [{"path": f"masks/s{index}_0.png"}, {"path": f"masks/s{index}_1.png"}],
            "sample_id": f"s{index}",
        }
        path = root / "referring_expression" / f"s{index}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(sample))
    return root


@dataclass(frozen=True)
class BadCase:
    """A bad input in the corpus: the text its failure's ``input`` must contain, and a word of the error."""

    kind: str
    input_contains: str
    error_contains: str


def unprivileged_command() -> list[str] | None:
    """A command prefix under which permission bits are enforced, or None when there is none.

    Root reads any file whatever its mode, so as root the program runs without the capabilities that
    bypass file permissions (setpriv drops them from the bounding set).
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"] if setpriv else None


def make_bad_corpus(root: Path, unreadable: bool = False) -> tuple[Path, list[BadCase], int]:
    """A pre/ post/ mask/ folder mixing good pairs with every kind of bad input we know.

    Args:
        root: where to write.
        unreadable: also add a file without read permission; only meaningful for a reader that
            permissions bind (see :func:`unprivileged_command`).

    Returns:
        (source folder, the bad cases, number of good pairs in it).
    """
    src = root / "bad_corpus"
    good = 2
    for index in range(good):
        a, b, m = scene(100 + index)
        save_png(src / "pre" / f"good{index}.png", a)
        save_png(src / "post" / f"good{index}.png", b)
        save_png(src / "mask" / f"good{index}.png", m)
    cases: list[BadCase] = []
    a, b, m = scene(200)

    # 1. corrupt file: random bytes with a .png name
    save_png(src / "pre" / "corrupt.png", a)
    (src / "post" / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(500))
    cases.append(BadCase("corrupt file", "post/corrupt.png", "not a readable image"))

    # 2. truncated PNG
    save_png(src / "pre" / "truncated.png", a)
    data = (save_png(src / "post" / "truncated.png", b)).read_bytes()
    (src / "post" / "truncated.png").write_bytes(data[: len(data) // 2])
    cases.append(BadCase("truncated file", "post/truncated.png", "corrupt or truncated"))

    # 3. missing partner
    save_png(src / "pre" / "lonely.png", a)
    cases.append(BadCase("missing partner", "pre/lonely.png", "no partner"))

    # 4. size mismatch without georeference
    save_png(src / "pre" / "sizes.png", a)
    save_png(src / "post" / "sizes.png", np.zeros((SIZE + 8, SIZE, 3), dtype=np.uint8))
    cases.append(BadCase("size mismatch", "post/sizes.png", "nothing says how they line up"))

    # 5. unsupported band count: 2-band rasters with no colour interpretation
    two = np.random.default_rng(1).integers(0, 255, size=(2, SIZE, SIZE), dtype=np.uint8)
    write_geotiff(src / "pre" / "twoband.tif", two)
    write_geotiff(src / "post" / "twoband.tif", two)
    cases.append(BadCase("unsupported band count", "twoband.tif", "--bands"))

    # 6. all-nodata raster
    blank = np.zeros((3, SIZE, SIZE), dtype=np.uint16)
    write_geotiff(src / "pre" / "allnodata.tif", blank, nodata=0)
    write_geotiff(src / "post" / "allnodata.tif", blank, nodata=0)
    cases.append(BadCase("all nodata", "pre/allnodata.tif", "no valid pixels"))

    # 7. non-overlapping rasters: same CRS, 100 km apart
    pre16, post16, _ = uint16_pair(2, count=3)
    write_geotiff(src / "pre" / "faraway.tif", pre16)
    write_geotiff(src / "post" / "faraway.tif", post16, transform=Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 4500000.0))
    cases.append(BadCase("non-overlapping rasters", "post/faraway.tif", "does not overlap"))

    # 8. path escaping the input root: a symlink to a file outside
    outside = save_png(root / "outside" / "escape.png", b)
    save_png(src / "pre" / "escape.png", a)
    (src / "post" / "escape.png").symlink_to(outside)
    cases.append(BadCase("path escapes the root", "post/escape.png", "outside the source folder"))

    # 9. empty (0-byte) file
    save_png(src / "pre" / "zerobytes.png", a)
    (src / "post" / "zerobytes.png").write_bytes(b"")
    cases.append(BadCase("empty file", "post/zerobytes.png", "empty file"))

    # 10. duplicate pair: same content as good0 under another name
    for folder in ("pre", "post"):
        (src / folder / "copy_of_good0.png").write_bytes((src / folder / "good0.png").read_bytes())
    cases.append(BadCase("duplicate pair", "good0.png", "same content"))

    # 11. mask of the wrong size
    save_png(src / "pre" / "badmask.png", a)
    save_png(src / "post" / "badmask.png", b)
    save_png(src / "mask" / "badmask.png", np.zeros((SIZE // 2, SIZE // 2), dtype=bool))
    cases.append(BadCase("mask size mismatch", "mask/badmask.png", "mask"))

    # 12. empty band-set folder for one date
    (src / "pre" / "emptyband").mkdir(parents=True)
    save_png(src / "post" / "emptyband.png", b)
    cases.append(BadCase("empty folder", "pre/emptyband", "empty band folder"))

    # 13. two files claiming one pair name
    save_png(src / "pre" / "twice.png", a)
    save_png(src / "pre" / "twice.jpg", a)
    save_png(src / "post" / "twice.png", b)
    cases.append(BadCase("ambiguous pair name", "twice", "both claim pair"))

    # 14. band set with bands of different resolutions
    write_geotiff(src / "pre" / "mixedres" / "X_B02.tif", pre16[:1])
    write_geotiff(src / "pre" / "mixedres" / "X_B03.tif", pre16[:1, : SIZE // 2, : SIZE // 2])
    write_geotiff(src / "pre" / "mixedres" / "X_B04.tif", pre16[:1])
    save_png(src / "post" / "mixedres.png", b)
    cases.append(BadCase("bands of different resolution", "mixedres", "different resolutions"))

    # 15. unreadable permissions
    if unreadable:
        save_png(src / "pre" / "locked.png", a)
        locked = save_png(src / "post" / "locked.png", b)
        locked.chmod(0)
        cases.append(BadCase("unreadable permissions", "post/locked.png", "permission denied"))
    return src, cases, good


def make_bad_manifest(root: Path) -> tuple[Path, list[BadCase], int]:
    """A JSONL manifest with one good row and rows that are malformed, incomplete or escape the folder."""
    root.mkdir(parents=True, exist_ok=True)
    a, b, _ = scene(300)
    save_png(root / "pre" / "ok.png", a)
    save_png(root / "post" / "ok.png", b)
    rows = [
        json.dumps({"id": "ok", "pre": "pre/ok.png", "post": "post/ok.png"}),
        "{this is not json",
        json.dumps({"id": "nopost", "pre": "pre/ok.png"}),
        json.dumps({"id": "escape", "pre": "../../etc/hostname", "post": "post/ok.png"}),
        json.dumps({"id": "missing", "pre": "pre/nothere.png", "post": "post/ok.png"}),
        json.dumps({"id": "baddomain", "pre": "pre/ok.png", "post": "post/ok.png", "domain": "space"}),
    ]
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    cases = [
        BadCase("malformed JSON line", "manifest.jsonl:2", "not valid JSON"),
        BadCase("row missing a field", "manifest.jsonl:3", "post"),
        BadCase("path escaping the manifest folder", "manifest.jsonl:4", "escapes"),
        BadCase("file that does not exist", "pre/nothere.png", "does not exist"),
        BadCase("invalid domain", "manifest.jsonl:6", "domain"),
    ]
    return manifest, cases, 1


def main(out: Path) -> None:
    make_folder_source(out / "folders")
    make_geotiff_source(out / "geotiff")
    make_band_set_source(out / "bandset")
    make_large_geotiff_source(out / "large_geotiff")
    make_mtrefseg_source(out / "mtrefseg")
    make_bad_corpus(out / "bad")
    make_bad_manifest(out / "bad_manifest")
    print(f"wrote test fixtures to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))


def draft_triplets_from_truth(
    catalog: Catalog, store: ImageStore, root: Path, pairs: int = 3, size: int = 256
) -> list[Triplet]:
    """Ingest generated scenes and draft one triplet per known change, plus per pair one multi-target
    triplet (the union of its first two changes) and one no-target triplet; fast, exact stand-ins for the
    agent's output when a test is about what happens after drafting (audit, export)."""
    write_examples(root / "examples", pairs=pairs, seed=11, size=size)
    ingest(root / "examples", catalog, store, IngestOptions())
    triplets: list[Triplet] = []
    for pair in catalog.iter_pairs():
        for k, change in enumerate(pair.gt_changes):
            first_two = change.model_copy(update={"expressions": change.expressions[:2]})
            drafted = triplet_from_truth(pair, first_two, f"the {change.category or 'object'} number {k}")
            triplets.append(drafted.model_copy(update={"candidate_ids": [f"{pair.id}-c{k}"]}))
        if len(pair.gt_changes) >= 2:
            first, second = pair.gt_changes[:2]
            union = RLEMask.union([first.mask, second.mask])
            triplets.append(
                Triplet(
                    id=triplet_id(pair.id, union, first.change_type, "group"),
                    pair_id=pair.id,
                    mask=union,
                    expressions=["the two changed objects"],
                    change_type=first.change_type,
                    category="group",
                    candidate_ids=[f"{pair.id}-c0", f"{pair.id}-c1"],
                )
            )
        empty = RLEMask.empty(pair.height, pair.width)
        triplets.append(
            Triplet(
                id=triplet_id(pair.id, empty, None, "boat"),
                pair_id=pair.id,
                mask=empty,
                expressions=["the boat that appeared in the harbour"],
                change_type=None,
                category="boat",
            )
        )
    for triplet in triplets:
        catalog.upsert_triplet(triplet)
    return triplets


def audit_through_the_catalog(catalog: Catalog, triplets: list[Triplet]) -> dict[str, str]:
    """Audit drafted triplets without a server (a stand-in for push + Label Studio + pull): in turn accept,
    fix the text, repaint the mask, reject, and leave one in the queue. Returns the verdict by triplet id."""
    outcome: dict[str, str] = {}
    for k, triplet in enumerate(triplets):
        queued = triplet.moved_to(TripletState.QUEUED_FOR_AUDIT)
        action = ("accept", "fix_text", "fix_mask", "reject", "queue")[k % 5]
        if action == "queue":
            catalog.upsert_triplet(queued)
            outcome[triplet.id] = "queued"
            continue
        verdict = {"accept": Verdict.ACCEPT, "reject": Verdict.REJECT}.get(action, Verdict.FIX)
        mask = None
        if action == "fix_mask":
            painted = np.zeros(triplet.mask.size, bool)
            painted[5 + k % 20 : 40 + k % 20, 10:50] = True
            mask = RLEMask.from_array(painted)
        audit = AuditRecord(
            id=f"api-{triplet.id}",
            triplet_id=triplet.id,
            verdict=verdict,
            expressions=[f"the edited expression {k}"] if action == "fix_text" else None,
            mask=mask,
            auditor=f"auditor{k % 2}@example.org",
            lead_time_s=3.0 + k,
            backend="api",
        )
        catalog.save_audits([audit])
        decided = queued.model_copy(update={"audit_id": audit.id}).moved_to(verdict.resulting_state)
        catalog.upsert_triplet(queued)
        catalog.upsert_triplet(decided)
        outcome[triplet.id] = action
    return outcome
