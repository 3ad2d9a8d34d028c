"""The contact sheet (`craft-agent preview`): pages, HTML, filters, and the outline on the right date."""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFont
from typer.testing import CliRunner

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.cli import app
from craft_agent.errors import ConfigError
from craft_agent.models import ChangeType, ImagePair, RLEMask, Triplet, TripletState, triplet_id
from craft_agent.preview import (
    OUTLINE_RGB,
    PAGE_HEADER_PX,
    Panel,
    RowLayout,
    compose_page,
    html_row,
    paginate,
    render_row,
    select_triplets,
    wrap_text,
    write_preview,
)
from craft_agent.settings import Settings
from tests.data import audit_through_the_catalog, draft_triplets_from_truth


@dataclass
class Drafted:
    workspace: Path
    triplets: list[Triplet]
    """As the catalog holds them after the audit of the first pair."""
    pairs: dict[str, ImagePair]


@pytest.fixture(scope="module")
def drafted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drafted]:
    """Three generated pairs with drafted triplets of every kind; the first pair's triplets audited."""
    root = tmp_path_factory.mktemp("preview")
    workspace = root / "ws"
    with Catalog.from_settings(Settings(workspace=workspace)) as catalog:
        triplets = draft_triplets_from_truth(catalog, ImageStore(workspace), root / "src", pairs=3, size=128)
        first = sorted(catalog.iter_pairs(), key=lambda p: p.name)[0].id
        audit_through_the_catalog(catalog, [t for t in triplets if t.pair_id == first])
        yield Drafted(workspace, list(catalog.iter_triplets()), {p.id: p for p in catalog.iter_pairs()})


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CRAFT_"):
            monkeypatch.delenv(name)


def outline_share(page: np.ndarray, layout: RowLayout, which: Panel, mask: np.ndarray) -> float:
    """Share of the mask's boundary pixels that have the outline colour within 2 px, on one panel of a
    one-row page (the image fills the square panel)."""
    x, y = layout.panel_origin(which)
    panel = page[PAGE_HEADER_PX + y : PAGE_HEADER_PX + y + layout.thumb, x : x + layout.thumb]
    drawn = np.all(panel == OUTLINE_RGB, axis=-1)
    drawn = cv2.dilate(drawn.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    boundary = mask & ~(cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    rows, cols = np.nonzero(boundary)
    scale = layout.thumb / mask.shape[1]
    hits = drawn[((rows + 0.5) * scale).astype(int), ((cols + 0.5) * scale).astype(int)]
    return float(hits.mean())


def outline_pixels(page: np.ndarray, layout: RowLayout, which: Panel) -> int:
    x, y = layout.panel_origin(which)
    panel = page[PAGE_HEADER_PX + y : PAGE_HEADER_PX + y + layout.thumb, x : x + layout.thumb]
    return int(np.all(panel == OUTLINE_RGB, axis=-1).sum())


def test_cli_writes_pages_and_an_offline_html_with_every_expression(
    drafted: Drafted, tmp_path: Path, cli_env: None
) -> None:
    out = tmp_path / "sheet"
    result = CliRunner().invoke(
        app, ["preview", "-w", str(drafted.workspace), "--out", str(out), "--per-page", "4", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    total = len(drafted.triplets)
    assert summary == {"out": str(out), "pages": -(-total // 4), "html": str(out / "index.html"), "triplets": total}
    pages = sorted(out.glob("page-*.png"))
    assert [p.name for p in pages] == [f"page-{k:03d}.png" for k in range(1, summary["pages"] + 1)]
    assert Image.open(pages[0]).size[1] > 4 * RowLayout().thumb  # four rows of full-size thumbnails
    document = (out / "index.html").read_text(encoding="utf-8")
    for triplet in drafted.triplets:
        assert html.escape(triplet.expressions[0]) in document
    # self-contained: every image is embedded, nothing is fetched
    sources = re.findall(r'src="([^"]*)"', document)
    assert len(sources) == 3 * total and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    assert "http://" not in document and "https://" not in document
    assert "NO TARGET" in document and "MULTI-TARGET: union of 2 objects outlined" in document
    audited = [t for t in drafted.triplets if t.audit_id]
    assert audited and all(f"audit record {t.audit_id}" in document for t in audited)
    # rows run by pair (name, then id), then triplet id
    shown = re.findall(r'<tr id="t-([^"]+)"', document)
    pair_of = {t.id: drafted.pairs[t.pair_id] for t in drafted.triplets}
    assert shown == sorted(shown, key=lambda tid: (pair_of[tid].name, pair_of[tid].id, tid))

    said = CliRunner().invoke(app, ["preview", "-w", str(drafted.workspace), "--out", str(out), "--per-page", "100"])
    assert said.exit_code == 0, said.output
    assert f"{total} triplet(s)" in said.stdout and "on 1 page(s)" in said.stdout
    assert [p.name for p in out.glob("page-*.png")] == ["page-001.png"]  # the earlier run's pages are gone


def test_filters_by_state_type_and_pair(drafted: Drafted, tmp_path: Path, cli_env: None) -> None:
    with Catalog.from_settings(Settings(workspace=drafted.workspace)) as catalog:
        accepted = select_triplets(catalog, states=["accepted"])
        assert accepted and {t.state for _, t in accepted} == {TripletState.ACCEPTED}
        assert len(accepted) == sum(t.state is TripletState.ACCEPTED for t in drafted.triplets)
        no_target = select_triplets(catalog, types=["no_target"])
        assert {t.id for _, t in no_target} == {t.id for t in drafted.triplets if t.change_type is None}
        both = select_triplets(catalog, types=["appear", "disappear"])
        kinds = {ChangeType.APPEAR, ChangeType.DISAPPEAR}
        assert {t.id for _, t in both} == {t.id for t in drafted.triplets if t.change_type in kinds}
        pair = sorted(drafted.pairs.values(), key=lambda p: p.name)[-1]
        expected = {t.id for t in drafted.triplets if t.pair_id == pair.id}
        assert {t.id for _, t in select_triplets(catalog, pairs=[pair.id])} == expected
        assert {t.id for _, t in select_triplets(catalog, pairs=[pair.name])} == expected
        with pytest.raises(ConfigError, match="unknown --state approved") as bad_state:
            select_triplets(catalog, states=["approved"])
        assert "accepted" in (bad_state.value.hint or "")
        with pytest.raises(ConfigError, match="unknown --type appeared"):
            select_triplets(catalog, types=["appeared"])
        with pytest.raises(ConfigError, match="no pair nowhere in the catalog"):
            select_triplets(catalog, pairs=["nowhere"])
        with pytest.raises(ConfigError, match="no triplet matches") as nothing:
            select_triplets(catalog, pairs=[pair.id], states=["accepted"])  # only the first pair was audited
        assert "drafted" in (nothing.value.hint or "")

    runner = CliRunner()
    args = ["preview", "-w", str(drafted.workspace), "--out", str(tmp_path / "accepted"), "--json"]
    decided = [t for t in drafted.triplets if t.state in (TripletState.ACCEPTED, TripletState.FIXED)]
    kind = next(t.change_type for t in decided if t.change_type)
    filtered = runner.invoke(app, [*args, "--state", "accepted", "--state", "fixed", "--type", kind.value])
    assert filtered.exit_code == 0, filtered.output
    wanted = [t for t in decided if t.change_type is kind]
    assert json.loads(filtered.stdout)["triplets"] == len(wanted)
    document = (tmp_path / "accepted" / "index.html").read_text(encoding="utf-8")
    assert set(re.findall(r'<tr id="t-([^"]+)"', document)) == {t.id for t in wanted}
    refused = runner.invoke(app, [*args, "--type", "grown"])
    assert refused.exit_code == 2 and json.loads(refused.stdout)["error"] == "unknown --type grown."


def test_the_outline_is_on_the_date_of_the_change(drafted: Drafted, tmp_path: Path) -> None:
    layout = RowLayout()
    by_kind: dict[ChangeType | None, Triplet] = {}
    for triplet in sorted(drafted.triplets, key=lambda t: t.id):
        if triplet.state is TripletState.DRAFTED and len(triplet.candidate_ids) <= 1:
            by_kind.setdefault(triplet.change_type, triplet)
    assert set(by_kind) == {ChangeType.APPEAR, ChangeType.DISAPPEAR, ChangeType.STATE_CHANGE, None}
    with Catalog.from_settings(Settings(workspace=drafted.workspace)) as catalog:
        store = ImageStore(drafted.workspace)
        for change_type, triplet in by_kind.items():
            out = tmp_path / (change_type.value if change_type else "no_target")
            written = write_preview(catalog, store, out, pairs=[triplet.pair_id], per_page=1)
            position = [t.id for _, t in select_triplets(catalog, pairs=[triplet.pair_id])].index(triplet.id)
            page = np.asarray(Image.open(out / f"page-{position + 1:03d}.png").convert("RGB"))
            assert written.pages > position
            if change_type is None:
                assert all(outline_pixels(page, layout, w) == 0 for w in ("earlier", "later", "zoom"))
                continue
            mask = triplet.mask.to_array()
            earlier, later = (outline_share(page, layout, w, mask) for w in ("earlier", "later"))
            assert outline_pixels(page, layout, "zoom") > 0
            if change_type is ChangeType.APPEAR:
                assert later > 0.9 and outline_pixels(page, layout, "earlier") == 0, (earlier, later)
            elif change_type is ChangeType.DISAPPEAR:
                assert earlier > 0.9 and outline_pixels(page, layout, "later") == 0, (earlier, later)
            else:
                assert earlier > 0.9 and later > 0.9


def test_a_tiny_accepted_mask_shows_its_area_in_pixels_and_square_metres(drafted: Drafted) -> None:
    pair = next(iter(drafted.pairs.values())).model_copy(update={"gsd_m": 0.5})
    store = ImageStore(drafted.workspace)
    pre, post = store.load(pair.pre), store.load(pair.post)
    painted = np.zeros((pair.height, pair.width), bool)
    painted[40:51, 60:81] = True  # 11 x 21 = 231 px
    mask = RLEMask.from_array(painted)
    long_words = "the roofs of the two small houses by the northern road that were repainted " * 4
    triplet = Triplet(
        id=triplet_id(pair.id, mask, ChangeType.STATE_CHANGE, "roof"),
        pair_id=pair.id,
        mask=mask,
        expressions=["repainted roofs", long_words],
        change_type=ChangeType.STATE_CHANGE,
        category="roof",
        state=TripletState.ACCEPTED,
        uncorrected=True,
    )
    layout = RowLayout()
    row = render_row(pair, triplet, pre, post, layout)
    assert (row.facts.area_px, row.facts.area_m2) == (231, pytest.approx(57.75))
    assert row.facts.mask_line.startswith("mask 231 px ≈ 57.8 m²")
    assert row.facts.outlined == ("earlier", "later")
    assert row.zoom_factor is not None and row.zoom_factor > 4  # the small mask is enlarged in the zoom panel
    assert row.image.shape[1] == layout.width and row.image.shape[0] >= layout.min_height
    fragment = html_row(row, "page-001.png")
    assert "231 px ≈ 57.8 m²" in fragment and "ACCEPTED" in fragment and "UNCORRECTED" in fragment
    assert "accepted WITHOUT an audit record" in fragment  # accepted, yet no auditor's verdict backs it
    for panel in (row.earlier, row.later, row.zoom):
        assert np.all(panel == OUTLINE_RGB, axis=-1).sum() > 0


def test_pages_and_wrapping() -> None:
    assert [list(p) for p in paginate(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="per_page"):
        list(paginate([1], 0))
    rows = [np.zeros((30, 50, 3), np.uint8), np.zeros((40, 50, 3), np.uint8)]
    page = compose_page(rows, "a heading")
    assert page.shape == (PAGE_HEADER_PX + 30 + 40 + 2, 50, 3)
    with pytest.raises(ValueError, match="one width"):
        compose_page([rows[0], np.zeros((30, 60, 3), np.uint8)], "x")
    font = ImageFont.load_default(size=15)
    lines = wrap_text("the red car parked " * 20 + "x" * 200, font, 300)
    assert len(lines) > 5 and all(font.getlength(line) <= 300 for line in lines)
    assert "".join(lines).replace(" ", "") == ("theredcarparked" * 20 + "x" * 200)
