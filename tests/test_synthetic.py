"""The synthetic scene generator: determinism, exact and visible ground truth, and the examples folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from craft_agent.errors import ExamplesError
from craft_agent.grid import position_of_box
from craft_agent.synthetic import (
    CATEGORIES,
    CHANGE_TYPES,
    SyntheticScene,
    generate_scene,
    write_examples,
)

SIZE = 256
PAIRS = 12


def aligned(scene: SyntheticScene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pre, post with the recorded shift undone, and the union mask, on the region both images cover."""
    dx, dy = scene.shift
    h, w = scene.pre.shape[:2]
    rows = slice(max(0, -dy), h - max(0, dy))
    cols = slice(max(0, -dx), w - max(0, dx))
    post = scene.post[rows.start + dy : rows.stop + dy, cols.start + dx : cols.stop + dx]
    return scene.pre[rows, cols].astype(np.float32), post.astype(np.float32), scene.change_mask[rows, cols]


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("examples")
    write_examples(out, PAIRS, seed=0, size=SIZE)
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return out, [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def scenes(examples: tuple[Path, list[dict[str, Any]]]) -> list[SyntheticScene]:
    """The scenes behind the examples folder, regenerated from the seeds its manifest records."""
    _, records = examples
    return [generate_scene(r["generator"]["seed"], r["generator"]["size"], r["domain"], r["id"]) for r in records]


# -- determinism ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["rs", "ns"])
def test_same_seed_gives_identical_scenes(domain: str) -> None:
    a, b = generate_scene(7, SIZE, domain), generate_scene(7, SIZE, domain)  # type: ignore[arg-type]
    assert np.array_equal(a.pre, b.pre) and np.array_equal(a.post, b.post)
    assert a.shift == b.shift
    assert [c.description for c in a.changes] == [c.description for c in b.changes]
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.changes, b.changes, strict=True))


@pytest.mark.parametrize("domain", ["rs", "ns"])
def test_different_seeds_give_different_scenes(domain: str) -> None:
    a, b = generate_scene(7, SIZE, domain), generate_scene(8, SIZE, domain)  # type: ignore[arg-type]
    assert np.abs(a.pre.astype(int) - b.pre.astype(int)).mean() > 10


def test_generation_does_not_touch_the_global_rng() -> None:
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    generate_scene(1, 128, "rs")
    generate_scene(1, 128, "ns")
    assert np.random.random() == expected


# sha256 of the pre and post images and of every change mask, for a few seeds that between them exercise
# every kind of change; computed before the generator was split into a package. Any edit to the drawing
# code, to the random draws or to their order changes them. If an edit is meant to change the scenes,
# recompute these digests in the same change and say so; otherwise the edit has a bug. (A new OpenCV or
# NumPy may round differently and change them too: check the other tests still pass, then recompute.)
PINNED_DIGESTS: dict[tuple[int, int, str], dict[str, Any]] = {
    (2, 256, "rs"): {
        "pre": "f0d809e1557779c83f114592fc98f4875b3201b4e13bda498053d8a9c88d8731",
        "post": "d962e130114d85c0feec4b17a909b81e8e7ff2826c0af45c8d5166e8cf2db645",
        "masks": [
            "75929b8e300862c5be36b73977988dc4315d3ed613eafef8642e70a62eacee88",
            "980bb212e8f708aea3ac44b6d19686d18e25502872c28167e3215e5713c4d777",
            "003def4c166556692c428708937759fe75b4046986e043db0d12256557a5309b",
            "6d0abefda4ff9dfbc66d0a873bf177a86c2ee8a85cc926fce6b12f4671bb7d42",
            "0692eb906b6f71c23c75d4e076bd80d500d2679b0ad2489d1d3fa93f973aea18",
            "46dc461f2f785b1dfe45a9a8afbed8ae9de8de81924004ec57456dc8ca6d9825",
        ],
    },
    (6, 256, "rs"): {
        "pre": "e005865c2bfd0ab6785498cb4157429a7b7064090f087bd007db89729a914cbe",
        "post": "f243bce857f4ac594a45e99c606cafff32d9f58ebca2555ea99637d69124c341",
        "masks": [
            "aad4c5fdc6ebdc056af3e0e5f0a41feb7fa433cb6c8f9096e6f1ccc33a939aa5",
            "d2ed5e478364daed1ba46a6e896fb62e2d5d64dee89b3d10f09a9f258b895065",
            "dff814f5ad8d3a87732f3e8ecc509f5d205e50441c76b6ed7a696b92220d04dc",
        ],
    },
    (8, 128, "rs"): {
        "pre": "f912486e9d85a4dc1f788dfab0b0a58ae4dd3ea29ed9c7d8541e5f97343c6bca",
        "post": "9523567c294c3df9bb456ba239827c70782dcbad0e55a5b5afbd0f168aab5f05",
        "masks": [
            "bbef38129ba642f58f3b4398918fd9da966710b7d9b38c37a997f00f05183ad5",
            "7fa5ed70ebb1f0a9effebab64d142b9789e180e6cc400fc6cefd46c995e307c9",
            "fd5c837a54219910d0289a82a812f39f3e15cc6b6ad4d74543d33d9d7c2721a9",
            "f24a52ab8ded1b571d18a7dba7374093a79812cb4483e05a39342c4320945004",
        ],
    },
    (33, 256, "ns"): {
        "pre": "217d5ca39f7acb13ab4dc1db35d5b2dbcd85066b95c03540e0ca854427930256",
        "post": "3da8b4df6dcde7a255ea701beea5b4cce106fc2b5fdf02efd01c4d872a6f548d",
        "masks": [
            "ac4262f8e94d1c911af057a4c3c0389cabc6281ddcf623c3f0aa9323cb0ca67a",
            "de81e363ac27837e2fe77c31b52eddd693d275147d6ee862d05d1cb604d96828",
            "dafb5d4c06c7ef3a315233527868daa83de97d96e991949241bade44ff44bbcb",
            "ab273dc45d212426c18a01be94a66112ade23adb1e1a98dcfffc7c39c89b6863",
        ],
    },
    (56, 256, "ns"): {
        "pre": "713bea937cf247bec595fd2cac79cdebbe7efd275ae34c21575f15988e9b40d4",
        "post": "a7f3005eb5815504f3ff632c20d7ee38746393c63d910c49cb66938f21f54e2a",
        "masks": [
            "275d6763048bf869366e5019e203fcc41573cd3a02ce0cd21d0e11558fd8f993",
            "870ff8401079d580b93ecb2bb1f9ab2ac9dab73f3c202c7c9b6d002b2429519e",
            "8231d62f41b52ac647d82da53344216d1f8ab842429c8805889c42a898ecc8c4",
            "164d55bdb015c28b226918a6c73d8c7bfde15f255ff0f5552514ddeab3514a0c",
        ],
    },
}


def sha256_of(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.parametrize(("seed", "size", "domain"), list(PINNED_DIGESTS))
def test_scenes_are_bit_identical_to_the_pinned_digests(seed: int, size: int, domain: str) -> None:
    scene = generate_scene(seed, size, domain)  # type: ignore[arg-type]
    digests = {
        "pre": sha256_of(scene.pre),
        "post": sha256_of(scene.post),
        "masks": [sha256_of(change.mask) for change in scene.changes],
    }
    assert digests == PINNED_DIGESTS[(seed, size, domain)]


# -- ground truth ----------------------------------------------------------------------------------------------


def test_every_change_type_and_both_domains_appear(scenes: list[SyntheticScene]) -> None:
    assert {s.domain for s in scenes} == {"rs", "ns"}
    assert {c.change_type for s in scenes for c in s.changes} == set(CHANGE_TYPES)
    categories = {c.category for s in scenes for c in s.changes}
    assert categories <= set(CATEGORIES)
    assert {"building", "vehicle", "object"} <= categories


def test_change_counts_are_in_range(scenes: list[SyntheticScene]) -> None:
    for scene in scenes:
        assert (2 <= len(scene.changes) <= 6) if scene.domain == "rs" else (2 <= len(scene.changes) <= 4)


def test_images_are_rgb_uint8_of_the_requested_size(scenes: list[SyntheticScene]) -> None:
    for scene in scenes:
        assert scene.pre.shape == scene.post.shape == (SIZE, SIZE, 3)
        assert scene.pre.dtype == scene.post.dtype == np.uint8


def test_masks_are_non_empty_disjoint_and_inside_the_image(scenes: list[SyntheticScene]) -> None:
    for scene in scenes:
        total = np.zeros((SIZE, SIZE), np.int32)
        for change in scene.changes:
            assert change.mask.dtype == bool and change.mask.shape == (SIZE, SIZE)
            # Vehicles are the smallest objects; even they must be segmentable (>= 0.03 % of the image).
            assert change.mask.sum() >= 0.0003 * SIZE * SIZE, (scene.name, change.description)
            total += change.mask
        assert total.max() == 1, f"overlapping changes in {scene.name}"
        assert np.array_equal(total.astype(bool), scene.change_mask)


def test_every_change_is_clearly_visible_after_undoing_the_shift(scenes: list[SyntheticScene]) -> None:
    for scene in scenes:
        pre, post, union = aligned(scene)
        diff = np.abs(pre - post).mean(axis=2)
        outside = float(diff[~union].mean())
        dx, dy = scene.shift
        h, w = scene.pre.shape[:2]
        for change in scene.changes:
            mask = change.mask[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            inside = float(diff[mask].mean())
            assert inside > 1.6 * outside and inside - outside > 12, (scene.name, change.description, inside, outside)


def test_post_image_is_shifted_by_the_recorded_amount(scenes: list[SyntheticScene]) -> None:
    for scene in scenes[:4]:
        dx, dy = scene.shift
        assert abs(dx) <= 2 and abs(dy) <= 2
        pre = scene.pre.astype(np.float32)
        post = scene.post.astype(np.float32)
        keep = ~scene.change_mask[4:-4, 4:-4]

        def misfit(sx: int, sy: int, pre: np.ndarray = pre, post: np.ndarray = post, keep: np.ndarray = keep) -> float:
            moved = post[4 + sy : SIZE - 4 + sy, 4 + sx : SIZE - 4 + sx]
            return float(np.abs(pre[4:-4, 4:-4] - moved).mean(axis=2)[keep].mean())

        best = min(((sx, sy) for sx in range(-2, 3) for sy in range(-2, 3)), key=lambda s: misfit(*s))
        assert best == (dx, dy), scene.name


def test_positions_match_the_mask_bounding_box(scenes: list[SyntheticScene]) -> None:
    for scene in scenes:
        for change in scene.changes:
            ys, xs = np.nonzero(change.mask)
            expected = position_of_box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, SIZE, SIZE)
            assert change.position == expected
            assert f"in the {change.position}" in change.description


def test_descriptions_and_attributes_name_the_object(scenes: list[SyntheticScene]) -> None:
    for scene in scenes:
        for change in scene.changes:
            assert {"colour", "size", "shape"} <= set(change.attributes)
            assert change.attributes["size"] in {"small", "medium", "large"}
            assert change.description.startswith("the ")
            if change.change_type == "state_change":
                assert change.attributes["colour_before"] != change.attributes["colour"]


def test_street_changes_use_street_categories(scenes: list[SyntheticScene]) -> None:
    street = {c.category for s in scenes if s.domain == "ns" for c in s.changes}
    aerial = {c.category for s in scenes if s.domain == "rs" for c in s.changes}
    assert street <= {"vehicle", "object", "facade", "vegetation"}
    assert aerial <= {"building", "roof", "vegetation", "vehicle", "water", "ground", "road"}


@pytest.mark.parametrize(("size", "domain"), [(128, "rs"), (128, "ns"), (1024, "rs"), (1024, "ns")])
def test_small_and_large_sizes_work(size: int, domain: str) -> None:
    scene = generate_scene(5, size, domain)  # type: ignore[arg-type]
    assert scene.pre.shape == (size, size, 3)
    assert len(scene.changes) >= 2
    for change in scene.changes:
        assert change.mask.shape == (size, size)
        assert change.mask.sum() >= 0.0003 * size * size


# -- examples folder -------------------------------------------------------------------------------------------


def test_examples_folder_has_every_file(examples: tuple[Path, list[dict[str, Any]]]) -> None:
    out, records = examples
    assert len(records) == PAIRS
    assert [r["id"] for r in records][:4] == ["scene_0000", "scene_0001", "scene_0002", "street_0003"]
    assert "seed 0" in (out / "README.txt").read_text(encoding="utf-8")
    for record in records:
        name = record["id"]
        assert record["pre"] == f"pre/{name}.png" and record["post"] == f"post/{name}.png"
        assert record["mask"] == f"mask/{name}.png" and record["group"] == name
        assert record["domain"] == ("ns" if name.startswith("street_") else "rs")
        assert record["date_pre"] < record["date_post"]
        assert record["generator"]["name"] == "craft_agent.synthetic"
        assert record["generator"]["size"] == SIZE
        for change in record["changes"]:
            assert (out / change["mask"]).is_file()
    assert len(list((out / "changes").iterdir())) == sum(len(r["changes"]) for r in records)


def test_manifest_matches_the_generated_scenes(
    examples: tuple[Path, list[dict[str, Any]]], scenes: list[SyntheticScene]
) -> None:
    out, records = examples
    for record, scene in zip(records, scenes, strict=True):
        assert np.array_equal(read_png(out / record["pre"]), scene.pre)
        assert np.array_equal(read_png(out / record["post"]), scene.post)
        assert record["generator"]["shift"] == list(scene.shift)
        union = np.zeros((SIZE, SIZE), bool)
        assert len(record["changes"]) == len(scene.changes)
        for written, change in zip(record["changes"], scene.changes, strict=True):
            mask = read_png(out / written["mask"])
            assert set(np.unique(mask)) <= {0, 255}
            assert np.array_equal(mask == 255, change.mask)
            union |= mask == 255
            assert written["change_type"] == change.change_type and written["category"] == change.category
            assert written["position"] == change.position and written["description"] == change.description
            assert written["attributes"] == change.attributes
        written_union = read_png(out / record["mask"])
        assert written_union.ndim == 2 and written_union.dtype == np.uint8
        assert np.array_equal(written_union == 255, union)


def test_adding_pairs_leaves_earlier_pairs_unchanged(tmp_path: Path) -> None:
    write_examples(tmp_path / "few", 2, seed=4, size=128)
    write_examples(tmp_path / "more", 4, seed=4, size=128)
    few = (tmp_path / "few" / "manifest.jsonl").read_text().splitlines()
    more = (tmp_path / "more" / "manifest.jsonl").read_text().splitlines()
    assert few == more[:2]
    for name in ("scene_0000", "scene_0001"):
        assert (tmp_path / "few" / "pre" / f"{name}.png").read_bytes() == (
            tmp_path / "more" / "pre" / f"{name}.png"
        ).read_bytes()


@pytest.mark.parametrize(("fraction", "prefixes"), [(0.0, {"scene"}), (1.0, {"street"})])
def test_street_fraction_picks_the_domain(tmp_path: Path, fraction: float, prefixes: set[str]) -> None:
    summary = write_examples(tmp_path, 3, seed=1, size=128, street_fraction=fraction)
    names = {p.stem.split("_")[0] for p in (tmp_path / "pre").iterdir()}
    assert names == prefixes
    assert summary.pairs == 3
    assert summary.changes == sum(summary.by_type.values())
    assert set(summary.by_type) == set(CHANGE_TYPES)
    assert summary.manifest == tmp_path / "manifest.jsonl"


def test_rewriting_an_examples_folder_replaces_it(tmp_path: Path) -> None:
    write_examples(tmp_path, 3, seed=2, size=128)
    summary = write_examples(tmp_path, 1, seed=2, size=128)
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 1
    assert [p.name for p in (tmp_path / "pre").iterdir()] == ["scene_0000.png"]
    assert len(list((tmp_path / "changes").iterdir())) == summary.changes


def test_refuses_to_clobber_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(ExamplesError) as caught:
        write_examples(tmp_path, 1, seed=0, size=128)
    assert str(tmp_path) in caught.value.message and caught.value.hint
    assert (tmp_path / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_refuses_a_file_as_output(tmp_path: Path) -> None:
    target = tmp_path / "file.png"
    target.write_bytes(b"x")
    with pytest.raises(ExamplesError):
        write_examples(target, 1, seed=0, size=128)
    assert target.read_bytes() == b"x"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"pairs": 0}, "--pairs"),
        ({"size": 64}, "--size"),
        ({"size": 5000}, "--size"),
        ({"street_fraction": -0.1}, "--street-fraction"),
        ({"street_fraction": 1.5}, "--street-fraction"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_write_examples_validates_arguments(tmp_path: Path, kwargs: dict[str, Any], words: str) -> None:
    arguments: dict[str, Any] = {"pairs": 1, "seed": 0, "size": 128, "street_fraction": 0.25} | kwargs
    with pytest.raises(ExamplesError) as caught:
        write_examples(tmp_path / "out", **arguments)
    assert words in caught.value.message and caught.value.hint
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("seed", "size", "domain"), [(0, 100, "rs"), (0, 512, "sat"), (-3, 512, "rs")])
def test_generate_scene_validates_arguments(seed: int, size: int, domain: str) -> None:
    with pytest.raises(ExamplesError):
        generate_scene(seed, size, domain)  # type: ignore[arg-type]
