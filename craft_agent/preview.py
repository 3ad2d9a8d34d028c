"""Contact sheets of triplets: judge a run by eye before auditors are invited.

One row per triplet: the earlier and the later image, the mask outlined (never filled) on the date where its
target is (the later image for ``appear``, the earlier for ``disappear``, both for a change of state; nothing
for a no-target expression), a zoom on the mask's surroundings (where a small mask can be judged), and beside
them the expressions, change type, category, state, mask area (px, and m² when the pair has a ground sample
distance), how many objects the mask unites, whether the agent could confirm it, which audit record (if any)
decided its state, and the backends that made it. Rows are sorted by pair, then triplet, and written as PNG
pages plus one ``index.html`` that embeds JPEG thumbnails, so the folder opens offline and the HTML alone is
enough.

The rendering functions are pure over the records (:func:`describe`, :func:`render_row`, :func:`paginate`,
:func:`compose_page`, :func:`html_row`, :func:`html_document`); :func:`write_preview` reads the catalog and
writes the folder.

Layout of a row (``RowLayout`` gives the pixel positions)::

    | EARLIER date   | LATER date     | ZOOM later ×4 | type · category · STATE  |
    | [thumb]        | [thumb]        | [mask window, | pair, triplet            |
    | outlined when  | outlined when  |  enlarged,    | area px (m²), objects    |
    | the target is  | the target is  |  outlined]    | agent check, backends    |
    | on this date   | on this date   |               | 1. expression ...        |
"""

from __future__ import annotations

import base64
import html
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeVar

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydantic import Field

from craft_agent.catalog import Catalog, ImageStore
from craft_agent.catalog.store import encode_png, write_atomic
from craft_agent.errors import ConfigError
from craft_agent.models import DECIDED_STATES, ChangeType, ImagePair, Record, Triplet, TripletState
from craft_agent.runs import ProgressCallback

NO_TARGET = "no_target"
"""The ``--type`` value that selects no-target triplets (their change type is None)."""

TYPE_CHOICES: tuple[str, ...] = (*(t.value for t in ChangeType), NO_TARGET)
STATE_CHOICES: tuple[str, ...] = tuple(s.value for s in TripletState)

OUTLINE_RGB = (255, 221, 0)
"""Colour of the mask outline (with a dark halo under it so it shows on bright and dark ground)."""
HALO_RGB = (20, 20, 20)
SMALL_MARK_PX = 12
"""A mask whose box is smaller than this on the thumbnail also gets a ring around it, so it can be found."""

PAGE_HEADER_PX = 44
"""Height of the title strip at the top of every PNG page; rows start below it."""
ROW_RULE_PX = 2
"""The grey rule between two rows of a page."""

BACKGROUND = (250, 250, 248)
INK = (28, 28, 28)
MUTED = (105, 105, 105)
ALERT = (190, 30, 30)
STATE_COLOURS: dict[TripletState, tuple[int, int, int]] = {
    TripletState.DRAFTED: (110, 110, 110),
    TripletState.QUEUED_FOR_AUDIT: (30, 90, 180),
    TripletState.ACCEPTED: (20, 130, 50),
    TripletState.REJECTED: (190, 30, 30),
    TripletState.FIXED: (200, 110, 0),
    TripletState.EXPORTED: (120, 50, 160),
}

Date = Literal["earlier", "later"]
Panel = Literal["earlier", "later", "zoom"]
PANELS: tuple[Panel, ...] = ("earlier", "later", "zoom")
T = TypeVar("T")


@dataclass(frozen=True)
class RowLayout:
    """Pixel geometry of a row: three square panels of side ``thumb`` (earlier, later, zoom) and a text column.

    Args:
        thumb: side of each image panel in pixels (the image is fitted inside, aspect kept).
        text_width: width of the text column.
        margin: space around the row's content.
        gap: space between the panels and before the text column.
        label: height of the date label above each panel.
        font_px: body text size (the title line is 1 px larger and bold).
    """

    thumb: int = 280
    text_width: int = 500
    margin: int = 14
    gap: int = 12
    label: int = 26
    font_px: int = 15

    @property
    def width(self) -> int:
        return 2 * self.margin + len(PANELS) * (self.thumb + self.gap) + self.text_width

    def panel_origin(self, which: Panel) -> tuple[int, int]:
        """(x, y) of the top-left pixel of a panel within the row image."""
        return self.margin + PANELS.index(which) * (self.thumb + self.gap), self.margin + self.label

    @property
    def text_x(self) -> int:
        return self.margin + len(PANELS) * (self.thumb + self.gap)

    @property
    def min_height(self) -> int:
        return 2 * self.margin + self.label + self.thumb


class RowFacts(Record):
    """What a row says about one triplet, in the words both the PNG and the HTML use."""

    pair_id: str
    pair_name: str
    triplet_id: str
    state: TripletState
    change_type: ChangeType | None
    category: str | None
    expressions: list[str]
    area_px: int
    area_m2: float | None
    image_share: float
    objects: int
    regions: int
    outlined: tuple[Date, ...]
    zoomed: Date | None = Field(description="The date the zoom panel shows; None for a no-target triplet.")
    uncorrected: bool
    audit_id: str | None
    backends: dict[str, str]
    fallback_steps: list[str]
    date_pre: date | None
    date_post: date | None

    @property
    def no_target(self) -> bool:
        return self.area_px == 0

    @property
    def kind(self) -> str:
        """Change type or 'no target', with the category."""
        what = self.change_type.value if self.change_type else "no target"
        return f"{what} · {self.category}" if self.category else what

    @property
    def mask_line(self) -> str:
        """Area and how many objects the mask holds, or that it is empty."""
        if self.no_target:
            return "NO TARGET: empty mask (describes a change that did not happen)"
        area = f"mask {self.area_px:,} px"
        if self.area_m2 is not None:
            area += f" ≈ {self.area_m2:,.1f} m²"
        area += f" ({self.image_share:.2%} of the image)"
        if self.objects > 1:
            return f"{area} · MULTI-TARGET: union of {self.objects} objects outlined"
        if self.regions > 1:
            return f"{area} · {self.regions} separate regions"
        return area

    @property
    def check_line(self) -> str:
        """Whether the agent's correction loop confirmed the mask."""
        if self.uncorrected:
            return "UNCORRECTED: the agent could not confirm this mask"
        return "agent's mask check passed" if "masks" in self.backends else "no agent check recorded"

    @property
    def decided_unaudited(self) -> bool:
        """A verdict state that no audit record backs (set by hand or by a script, not by an auditor)."""
        return self.state in DECIDED_STATES and self.audit_id is None

    @property
    def audit_line(self) -> str:
        if self.audit_id:
            return f"audit record {self.audit_id}"
        if self.decided_unaudited:
            return f"{self.state.value} WITHOUT an audit record"
        return "awaiting audit" if self.state is TripletState.QUEUED_FOR_AUDIT else "not yet sent to audit"

    @property
    def backend_line(self) -> str:
        made = ", ".join(f"{stage}={name}" for stage, name in sorted(self.backends.items())) or "unknown"
        line = f"made by: {made}"
        if self.fallback_steps:
            line += f" · offline fallback for: {', '.join(self.fallback_steps)}"
        return line

    def panel_label(self, which: Panel, zoom_factor: float | None = None) -> str:
        """The caption above a panel: the date (and for the zoom, which date and how much it is enlarged)."""
        if which == "zoom":
            if self.zoomed is None:
                return "ZOOM · no target"
            factor = f" ×{zoom_factor:.1f}" if zoom_factor else ""
            return f"ZOOM {self.zoomed}{factor}"
        day = self.date_pre if which == "earlier" else self.date_post
        label = which.upper() + (f" {day.isoformat()}" if day else "")
        if which in self.outlined:
            label += " · outlined"
        elif self.no_target:
            label += " · no target"
        return label


@dataclass(frozen=True)
class PreviewRow:
    """One rendered triplet: its facts, the three panels with the outline drawn, and the whole row for a page."""

    facts: RowFacts
    earlier: np.ndarray
    later: np.ndarray
    zoom: np.ndarray
    zoom_factor: float | None
    image: np.ndarray

    @property
    def panels(self) -> tuple[tuple[Panel, np.ndarray], ...]:
        return (("earlier", self.earlier), ("later", self.later), ("zoom", self.zoom))

    def label(self, which: Panel) -> str:
        return self.facts.panel_label(which, self.zoom_factor)


class PreviewSummary(Record):
    """What :func:`write_preview` wrote."""

    out: Path
    html: Path
    pages: int
    triplets: int
    by_state: dict[str, int]
    by_type: dict[str, int]


def outlined_dates(change_type: ChangeType | None) -> tuple[Date, ...]:
    """The panels a target of this change type is drawn on (none for a no-target expression)."""
    if change_type is ChangeType.APPEAR:
        return ("later",)
    if change_type is ChangeType.DISAPPEAR:
        return ("earlier",)
    return ("earlier", "later")


def describe(pair: ImagePair, triplet: Triplet) -> RowFacts:
    """The facts a row shows about ``triplet`` of ``pair``."""
    mask = triplet.mask.to_array()
    area = int(mask.sum())
    regions = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1 if area else 0
    return RowFacts(
        pair_id=pair.id,
        pair_name=pair.name,
        triplet_id=triplet.id,
        state=triplet.state,
        change_type=triplet.change_type,
        category=triplet.category,
        expressions=list(triplet.expressions),
        area_px=area,
        area_m2=area * pair.gsd_m**2 if pair.gsd_m else None,
        image_share=area / float(pair.width * pair.height),
        objects=len(triplet.candidate_ids),
        regions=int(regions),
        outlined=outlined_dates(triplet.change_type) if area else (),
        zoomed=outlined_dates(triplet.change_type)[-1] if area else None,
        uncorrected=triplet.uncorrected,
        audit_id=triplet.audit_id,
        backends=dict(triplet.provenance.backends),
        fallback_steps=sorted(s for s, b in triplet.provenance.steps.items() if "offline-fallback" in b),
        date_pre=pair.date_pre,
        date_post=pair.date_post,
    )


def fit_panel(image: np.ndarray, thumb: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """``image`` scaled to fit a ``thumb`` square (aspect kept, centred on a grey ground).

    Returns:
        The panel, the scale applied, and the (x, y) offset of the scaled image inside the panel.
    """
    height, width = image.shape[:2]
    scale = thumb / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Enlarged pixels stay square (a mask's edge is judged against them); shrinking averages.
    scaled = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA)
    panel = np.full((thumb, thumb, 3), 200, dtype=np.uint8)
    x0, y0 = (thumb - size[0]) // 2, (thumb - size[1]) // 2
    panel[y0 : y0 + size[1], x0 : x0 + size[0]] = scaled
    return panel, scale, (x0, y0)


def outline_mask(panel: np.ndarray, mask: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """``panel`` with the contours of ``mask`` (already scaled to the image's size on the panel) drawn on it.

    A mask too small to see on the thumbnail also gets a ring around it.
    """
    drawn = panel.copy()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE, offset=offset)
    if not contours:
        return drawn
    cv2.drawContours(drawn, contours, -1, HALO_RGB, thickness=4, lineType=cv2.LINE_8)
    cv2.drawContours(drawn, contours, -1, OUTLINE_RGB, thickness=2, lineType=cv2.LINE_8)
    x, y, w, h = cv2.boundingRect(np.concatenate(contours))
    if max(w, h) < SMALL_MARK_PX:
        centre, radius = (x + w // 2, y + h // 2), max(w, h) + 10
        cv2.circle(drawn, centre, radius, HALO_RGB, thickness=3, lineType=cv2.LINE_AA)
        cv2.circle(drawn, centre, radius, OUTLINE_RGB, thickness=1, lineType=cv2.LINE_AA)
    return drawn


def _scaled_mask(mask: np.ndarray, size: tuple[int, int], scale: float) -> np.ndarray:
    if scale > 1:
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    # Any covered pixel counts when shrinking, so a thin or tiny mask does not vanish from the thumbnail.
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0


def render_panels(
    triplet: Triplet, pre: np.ndarray, post: np.ndarray, thumb: int, outlined: Sequence[Date]
) -> tuple[np.ndarray, np.ndarray]:
    """The earlier and the later thumbnail, the mask outlined on the dates in ``outlined``."""
    panels: dict[Date, np.ndarray] = {}
    mask = triplet.mask.to_array()
    sources: tuple[tuple[Date, np.ndarray], ...] = (("earlier", pre), ("later", post))
    for which, image in sources:
        panels[which] = _outlined_panel(image, mask, thumb) if which in outlined else fit_panel(image, thumb)[0]
    return panels["earlier"], panels["later"]


def render_zoom(triplet: Triplet, image: np.ndarray | None, thumb: int) -> tuple[np.ndarray, float | None]:
    """The mask's surroundings on ``image``, enlarged to a ``thumb`` panel with the outline drawn.

    The window is the mask's box with a margin, square where the image allows, so a mask of a few hundred
    pixels in a large scene can be judged. ``image`` None (a no-target triplet) gives an empty grey panel.

    Returns:
        The panel and how much the window was enlarged (None for the empty panel).
    """
    box = triplet.mask.bbox()
    if image is None or box is None:
        return np.full((thumb, thumb, 3), 200, dtype=np.uint8), None
    height, width = image.shape[:2]
    side = int(max(box.width, box.height) * 1.6) + 16
    side_x, side_y = min(side, width), min(side, height)
    x0 = int(np.clip((box.x0 + box.x1 - side_x) // 2, 0, width - side_x))
    y0 = int(np.clip((box.y0 + box.y1 - side_y) // 2, 0, height - side_y))
    window = (slice(y0, y0 + side_y), slice(x0, x0 + side_x))
    return _outlined_panel(image[window], triplet.mask.to_array()[window], thumb), thumb / max(side_x, side_y)


def _outlined_panel(image: np.ndarray, mask: np.ndarray, thumb: int) -> np.ndarray:
    panel, scale, offset = fit_panel(image, thumb)
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return outline_mask(panel, _scaled_mask(mask, size, scale), offset)


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=8)
def _font(size: int, bold: bool = False) -> Font:
    """DejaVu Sans when the system has it, else Pillow's own scalable font."""
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def _line_px(font: Font) -> int:
    """Height of a line of text in ``font`` (ascent of capitals to the descent of g)."""
    return int(font.getbbox("ÅHg")[3])


def wrap_text(text: str, font: Font, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels (words longer than a line are cut)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while font.getlength(word) > width:
            cut = max(1, next((k for k in range(len(word), 0, -1) if font.getlength(word[:k]) <= width), 1))
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    return lines or [""]


def _text_blocks(facts: RowFacts, layout: RowLayout) -> list[tuple[str, Font, tuple[int, int, int], int]]:
    """(text, font, colour, space before) for each line of the text column."""
    body, bold = _font(layout.font_px), _font(layout.font_px + 1, bold=True)
    small = _font(layout.font_px - 2)
    width = layout.text_width
    blocks: list[tuple[str, Font, tuple[int, int, int], int]] = []

    def add(text: str, font: Font, colour: tuple[int, int, int], space: int = 0, indent: str = "") -> None:
        for k, line in enumerate(wrap_text(text, font, width)):
            blocks.append(((indent if k else "") + line, font, colour, space if k == 0 else 0))

    add(f"{facts.kind}  ·  {facts.state.value.upper()}", bold, STATE_COLOURS[facts.state])
    add(f"pair {facts.pair_name} ({facts.pair_id[:12]}) · triplet {facts.triplet_id[:12]}", small, MUTED, 2)
    add(facts.mask_line, body, ALERT if facts.no_target else INK, 6)
    add(facts.check_line, body, ALERT if facts.uncorrected else INK, 2)
    add(facts.audit_line, body, ALERT if facts.decided_unaudited else INK, 2)
    add(facts.backend_line, small, MUTED, 2)
    for k, expression in enumerate(facts.expressions, start=1):
        add(f"{k}. {expression}", body, INK, 8 if k == 1 else 3, indent="    ")
    return blocks


def render_row(
    pair: ImagePair, triplet: Triplet, pre: np.ndarray, post: np.ndarray, layout: RowLayout | None = None
) -> PreviewRow:
    """The row of ``triplet``: both dates with the mask outlined on the right one, a zoom on the mask, and the
    triplet's facts beside them.

    Args:
        pair: the triplet's pair (dates, ground sample distance, name).
        triplet: the triplet to show.
        pre: the pair's earlier image, RGB uint8 (H, W, 3).
        post: the pair's later image.
        layout: sizes of the row (default :class:`RowLayout`).

    Returns:
        The facts, the three panels and the row image (RGB uint8, ``layout.width`` wide).
    """
    layout = layout or RowLayout()
    facts = describe(pair, triplet)
    earlier, later = render_panels(triplet, pre, post, layout.thumb, facts.outlined)
    zoomed = None if facts.zoomed is None else pre if facts.zoomed == "earlier" else post
    zoom, zoom_factor = render_zoom(triplet, zoomed, layout.thumb)
    blocks = _text_blocks(facts, layout)
    line_gap = 4
    text_height = sum(space + _line_px(font) + line_gap for _, font, _, space in blocks)
    height = max(layout.min_height, 2 * layout.margin + text_height)
    canvas = Image.new("RGB", (layout.width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    label_font = _font(layout.font_px - 1, bold=True)
    panels: tuple[tuple[Panel, np.ndarray], ...] = (("earlier", earlier), ("later", later), ("zoom", zoom))
    for which, panel in panels:
        x, y = layout.panel_origin(which)
        colour = ALERT if facts.no_target else (INK if which in (*facts.outlined, "zoom") else MUTED)
        draw.text((x, layout.margin), facts.panel_label(which, zoom_factor), font=label_font, fill=colour)
        canvas.paste(Image.fromarray(panel), (x, y))
    cursor = layout.margin
    for text, font, colour, space in blocks:
        cursor += space
        draw.text((layout.text_x, cursor), text, font=font, fill=colour)
        cursor += _line_px(font) + line_gap
    return PreviewRow(facts, earlier, later, zoom, zoom_factor, image=np.asarray(canvas))


def paginate(items: Sequence[T], per_page: int) -> Iterator[Sequence[T]]:
    """``items`` in pages of at most ``per_page``, in order.

    Raises:
        ValueError: when ``per_page`` is below 1.
    """
    if per_page < 1:
        raise ValueError(f"per_page must be at least 1, got {per_page}")
    for start in range(0, len(items), per_page):
        yield items[start : start + per_page]


def compose_page(rows: Sequence[np.ndarray], heading: str) -> np.ndarray:
    """One PNG page: a title strip ``PAGE_HEADER_PX`` high, then the row images with a rule between them.

    Raises:
        ValueError: when ``rows`` is empty or the rows differ in width.
    """
    if not rows:
        raise ValueError("a page needs at least one row")
    widths = {row.shape[1] for row in rows}
    if len(widths) != 1:
        raise ValueError(f"rows of one page must have one width, got {sorted(widths)}")
    width = widths.pop()
    height = PAGE_HEADER_PX + sum(row.shape[0] for row in rows) + ROW_RULE_PX * (len(rows) - 1)
    page = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    header = Image.new("RGB", (width, PAGE_HEADER_PX), (235, 235, 230))
    ImageDraw.Draw(header).text((14, 12), heading, font=_font(17, bold=True), fill=INK)
    page[:PAGE_HEADER_PX] = np.asarray(header)
    y = PAGE_HEADER_PX
    for k, row in enumerate(rows):
        if k:
            page[y : y + ROW_RULE_PX] = (190, 190, 185)
            y += ROW_RULE_PX
        page[y : y + row.shape[0]] = row
        y += row.shape[0]
    return page


def _jpeg_data_uri(image: np.ndarray, quality: int = 85) -> str:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a thumbnail of shape {image.shape} as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")


def html_row(row: PreviewRow, page_file: str) -> str:
    """The HTML of one row: both thumbnails embedded as JPEG data URIs, the facts as text."""
    facts = row.facts
    esc = html.escape
    figures = "".join(
        f'<figure class="{"on" if which in (*facts.outlined, "zoom") else "off"}"><figcaption>{esc(row.label(which))}'
        f'</figcaption><img src="{_jpeg_data_uri(panel)}" width="{panel.shape[1]}" height="{panel.shape[0]}" '
        f'alt="{which} image"></figure>'
        for which, panel in row.panels
    )
    colour = "#{:02x}{:02x}{:02x}".format(*STATE_COLOURS[facts.state])
    expressions = "".join(f"<li>{esc(e)}</li>" for e in facts.expressions)
    return (
        f'<tr id="t-{esc(facts.triplet_id)}"><td class="panels">{figures}</td><td class="facts">'
        f'<p class="kind" style="color:{colour}">{esc(facts.kind)} · {esc(facts.state.value.upper())}</p>'
        f'<p class="muted">pair {esc(facts.pair_name)} <code>{esc(facts.pair_id)}</code> · triplet '
        f'<code>{esc(facts.triplet_id)}</code> · <a href="{esc(page_file)}">{esc(page_file)}</a></p>'
        f'<p class="{"alert" if facts.no_target else ""}">{esc(facts.mask_line)}</p>'
        f'<p class="{"alert" if facts.uncorrected else ""}">{esc(facts.check_line)}</p>'
        f'<p class="{"alert" if facts.decided_unaudited else ""}">{esc(facts.audit_line)}</p>'
        f'<p class="muted">{esc(facts.backend_line)}</p><ol>{expressions}</ol></td></tr>'
    )


_STYLE = """
body{font-family:system-ui,'DejaVu Sans',sans-serif;margin:16px;background:#fafaf8;color:#1c1c1c}
h1{font-size:20px;margin:0 0 4px} table{border-collapse:collapse} tr{border-top:2px solid #bebeb9}
td{vertical-align:top;padding:10px 8px} td.panels{white-space:nowrap} figure{display:inline-block;margin:0 8px 0 0}
figcaption{font-size:13px;font-weight:bold;color:#696969;margin-bottom:4px} figure.on figcaption{color:#1c1c1c}
td.facts{max-width:560px;font-size:15px} td.facts p{margin:2px 0} .kind{font-weight:bold;font-size:16px}
.muted{color:#696969;font-size:13px} .alert{color:#be1e1e;font-weight:bold} ol{margin:8px 0 0;padding-left:22px}
code{font-size:12px}
"""


def html_document(rows: Sequence[str], heading: str, summary: str, page_files: Sequence[str]) -> str:
    """The whole self-contained ``index.html`` around the row fragments of :func:`html_row`."""
    esc = html.escape
    pages = " ".join(f'<a href="{esc(name)}">{esc(name)}</a>' for name in page_files)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(heading)}</title>'
        f"<style>{_STYLE}</style></head><body>\n<h1>{esc(heading)}</h1>\n<p>{esc(summary)}</p>\n"
        f'<p>PNG pages: {pages}</p>\n<p class="muted">The mask is outlined in yellow on the date where its target '
        "is: the later image for appear, the earlier for disappear, both for a change of state.</p>\n<table>\n"
        + "\n".join(rows)
        + "\n</table>\n</body></html>\n"
    )


def select_triplets(
    catalog: Catalog, pairs: Sequence[str] = (), states: Sequence[str] = (), types: Sequence[str] = ()
) -> list[tuple[ImagePair, Triplet]]:
    """The triplets to show with their pairs, sorted by pair (name, then id), then triplet id.

    Args:
        catalog: the catalog to read.
        pairs: pair ids or names to keep (all when empty).
        states: triplet states to keep (values of :class:`TripletState`; all when empty).
        types: change types to keep (values of :class:`ChangeType`, or ``no_target``; all when empty).

    Raises:
        ConfigError: for an unknown state, type or pair, or when nothing matches.
    """
    bad_states = [s for s in states if s not in STATE_CHOICES]
    if bad_states:
        raise ConfigError(f"unknown --state {', '.join(bad_states)}.", hint=f"use one of: {', '.join(STATE_CHOICES)}.")
    bad_types = [t for t in types if t not in TYPE_CHOICES]
    if bad_types:
        raise ConfigError(f"unknown --type {', '.join(bad_types)}.", hint=f"use one of: {', '.join(TYPE_CHOICES)}.")
    known = {pair.id: pair for pair in catalog.iter_pairs()}
    wanted = set(pairs)
    chosen = {pid: p for pid, p in known.items() if not wanted or pid in wanted or p.name in wanted}
    missing = sorted(wanted - {p.id for p in chosen.values()} - {p.name for p in chosen.values()})
    if missing:
        some = ", ".join(sorted(p.name for p in known.values())[:5]) or "none: the catalog has no pairs"
        raise ConfigError(
            f"no pair {', '.join(missing)} in the catalog.",
            hint=f"pass a pair id or name as the sheet shows it (pairs here include: {some}).",
        )
    selected = [
        (chosen[t.pair_id], t)
        for t in catalog.iter_triplets()
        if t.pair_id in chosen
        and (not states or t.state.value in states)
        and (not types or (t.change_type.value if t.change_type else NO_TARGET) in types)
    ]
    if not selected:
        counts = ", ".join(f"{n} {state}" for state, n in catalog.triplet_counts().items() if n)
        raise ConfigError(
            f"no triplet matches {_filters_text(pairs, states, types)}.",
            hint=f"the catalog holds {counts}; loosen the filters."
            if counts
            else "the catalog has no triplets yet: run `craft-agent generate` first.",
        )
    return sorted(selected, key=lambda pt: (pt[0].name, pt[0].id, pt[1].id))


def _filters_text(pairs: Sequence[str], states: Sequence[str], types: Sequence[str]) -> str:
    given = [f"{name}={','.join(v)}" for name, v in (("pair", pairs), ("state", states), ("type", types)) if v]
    return " ".join(given) or "no filter"


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the preview folder {out}: {exc.strerror or exc}.", hint="pass a writable --out."
        ) from exc


def _write(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}.",
            hint="pass a writable --out with free space.",
        ) from exc


_PAGE_NAME = re.compile(r"page-\d{3,}\.png")


def write_preview(
    catalog: Catalog,
    store: ImageStore,
    out: Path,
    pairs: Sequence[str] = (),
    states: Sequence[str] = (),
    types: Sequence[str] = (),
    per_page: int = 10,
    layout: RowLayout | None = None,
    progress: ProgressCallback | None = None,
) -> PreviewSummary:
    """Write the contact sheet of the selected triplets to ``out``: ``page-001.png``... and ``index.html``.

    Earlier pages of a previous sheet in ``out`` are replaced; other files there are left alone.

    Args:
        catalog, store: the workspace's catalog and image store.
        out: the folder to write (created when missing).
        pairs, states, types: filters, see :func:`select_triplets`.
        per_page: rows per PNG page.
        layout: sizes of a row (default :class:`RowLayout`).
        progress: see :data:`~craft_agent.runs.ProgressCallback`.

    Raises:
        ConfigError: for bad filters, an empty selection, ``per_page`` below 1, or ``out`` being a file or
            not writable.
        CatalogError: when a stored image is missing or corrupted.
    """
    if per_page < 1:
        raise ConfigError(f"--per-page {per_page} is below 1.", hint="pass --per-page 1 or more (default 10).")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"the preview destination {out} is a file, not a folder.", hint="pass another --out.")
    selected = select_triplets(catalog, pairs, states, types)
    layout = layout or RowLayout()
    _writable(out)
    filters = _filters_text(pairs, states, types)
    page_count = -(-len(selected) // per_page)
    page_files = [f"page-{k:03d}.png" for k in range(1, page_count + 1)]
    fragments: list[str] = []
    images: tuple[str, np.ndarray, np.ndarray] | None = None  # rows come sorted by pair: load each pair once
    done = 0
    for number, chunk in enumerate(paginate(selected, per_page), start=1):
        rows: list[np.ndarray] = []
        for pair, triplet in chunk:
            if progress:
                progress(done, len(selected), f"{pair.name} {triplet.id[:12]}")
            if images is None or images[0] != pair.id:
                images = (pair.id, store.load(pair.pre), store.load(pair.post))
            row = render_row(pair, triplet, images[1], images[2], layout)
            rows.append(row.image)
            fragments.append(html_row(row, page_files[number - 1]))
            done += 1
        first = (number - 1) * per_page + 1
        heading = (
            f"CRAFT-Agent preview · page {number}/{page_count} · triplets {first}-{first + len(chunk) - 1} "
            f"of {len(selected)} · {filters}"
        )
        _write(out / page_files[number - 1], encode_png(compose_page(rows, heading)))
    for stale in out.iterdir():
        if _PAGE_NAME.fullmatch(stale.name) and stale.name not in page_files:
            stale.unlink()
    by_state = Counter(t.state.value for _, t in selected)
    by_type = Counter(t.change_type.value if t.change_type else NO_TARGET for _, t in selected)
    summary_text = (
        f"{len(selected)} triplet(s) on {len({p.id for p, _ in selected})} pair(s), {filters}; by state: "
        + ", ".join(f"{n} {s}" for s, n in sorted(by_state.items()))
        + "; by type: "
        + ", ".join(f"{n} {t}" for t, n in sorted(by_type.items()))
    )
    document = html_document(fragments, "CRAFT-Agent preview", summary_text, page_files)
    _write(out / "index.html", document.encode("utf-8"))
    if progress:
        progress(len(selected), len(selected), "")
    return PreviewSummary(
        out=out,
        html=out / "index.html",
        pages=page_count,
        triplets=len(selected),
        by_state=dict(sorted(by_state.items())),
        by_type=dict(sorted(by_type.items())),
    )
