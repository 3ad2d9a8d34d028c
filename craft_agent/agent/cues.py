"""Measured facts about change candidates, and how to read them (what a person would see in the two crops).

:func:`change_cues` turns the candidates of one pair and its two RGB images into
:class:`~craft_agent.agent.schemas.ChangeCue` records (colours, greenness, texture, contrast, size, shape,
a category hint and phrases relating each candidate to its neighbours); :func:`change_cue` does one candidate.
Everything is measured on a window around the candidate's box (large windows are subsampled), so a 1024 px
pair with hundreds of candidates stays well under a second.

Reading the facts, shared by the cue's ``category_hint`` and the offline language model
(:mod:`craft_agent.agent.offline`), uses the cue's fields only, so a remote model that reads the same cue in
its prompt can make the same decision:

- :func:`judge_change_type`: appear / disappear / state change, from presence in each date (contrast) and
  from what the surface turned into (vegetation cleared, a lot built on, the same structure repainted...);
- :func:`infer_category`: building, roof, vegetation, vehicle, water, road, ground (aerial) or facade,
  object, vehicle, vegetation (street level).

Thresholds are module constants, documented where they are defined.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from craft_agent.agent.schemas import ChangeCue, Shape, Size
from craft_agent.change.evidence import to_lab
from craft_agent.models import Category, ChangeCandidate, ChangeType, Domain, RLEMask

# ---------------------------------------------------------------------------------------------------------
# Vocabulary and thresholds
# ---------------------------------------------------------------------------------------------------------

PALETTE: dict[str, tuple[int, int, int]] = {
    "white": (235, 235, 232),
    "light grey": (180, 180, 178),
    "grey": (128, 128, 130),
    "dark grey": (72, 72, 76),
    "black": (28, 28, 30),
    "red": (175, 45, 40),
    "pink": (220, 145, 135),
    "orange": (210, 120, 50),
    "yellow": (225, 195, 50),
    "cream": (230, 215, 180),
    "tan": (190, 165, 125),
    "beige": (172, 160, 138),
    "brown": (115, 80, 55),
    "olive": (135, 130, 80),
    "green": (75, 135, 55),
    "dark green": (40, 85, 40),
    "teal": (40, 80, 85),
    "blue": (45, 80, 165),
    "light blue": (150, 185, 215),
    "purple": (120, 70, 140),
}
"""Colour names and their reference sRGB values; a region gets the name nearest to its mean colour in CIE Lab,
with hue and saturation (a, b) weighted :data:`CHROMA_WEIGHT` times lightness, since people name a colour by
its hue before its lightness. Greys differ only in lightness (white L 93, light grey 73, grey 54, dark grey
31, black 10); "tan", "beige" and "olive" cover bare soil, rubble and dry grass, "teal" dark water, which
aerial scenes are full of."""

CHROMA_WEIGHT = 2.0
"""Weight of the squared a and b differences against the squared lightness difference when naming colours."""

GREY_COLOURS = frozenset({"white", "light grey", "grey", "dark grey", "black"})
GREEN_COLOURS = frozenset({"green", "dark green", "olive"})
_LEAFY_COLOURS = GREEN_COLOURS | {"black", "dark grey"}
GROUND_COLOURS = frozenset({"tan", "beige", "olive", "cream"})
"""Colours of bare ground: soil, rubble, dry grass, mud and bright dry soil (aerial scenes)."""

SIZE_WORDS: tuple[tuple[float, Size], ...] = (
    (0.0005, "tiny"),
    (0.003, "small"),
    (0.015, "medium"),
    (0.06, "large"),
)
"""Size word from the share of the image a region covers: below 0.05 % tiny (a car in a 512 px aerial tile),
below 0.3 % small (a house), below 1.5 % medium, below 6 % large, else huge."""

ELONGATED_ASPECT = 3.0
"""Length over width of the smallest enclosing rotated rectangle from which a region is elongated."""

COMPACT_SOLIDITY = 0.85
"""Share of its convex hull a region fills from which it is compact (rectangles, L-shapes, cars)."""

VEGETATION_EXG = 0.2
"""Excess-green index (2g - r - b) / (r + g + b) from which a green-named region is vegetation. Grass, lawns and
tree canopies give 0.3 to 0.55; green roofs about 0.3 but are smooth; dry grass 0.12, soil, asphalt and roofs
below 0.05. Water gives about 0.14 and yellow paint 0.2, hence the colour-name condition too."""

CANOPY_EXG = 0.3
"""Excess-green index from which a region textured like a canopy is vegetation whatever its colour name: the
bottom of the range grass and canopies give, above water (0.14) and yellow paint (0.2)."""

BARE_EXG = 0.12
"""Excess-green index below which a region is not vegetation (the margin over soil absorbs colour casts)."""

SIMILARITY_SHIFT_PX = 2
"""Largest misregistration (px) :func:`structure_similarity` forgives."""

PRESENT = 12.0
"""Contrast (Lab units) from which a region clearly stands out from its surroundings in a date."""

BOTH_PRESENT = 22.0
"""Contrast from which a region counts as present in both dates when their contrasts are alike."""

ONE_SIDED_RATIO = 2.0
"""Contrast ratio between the dates that makes a change one-sided (appear or disappear) outright."""

LEANING_RATIO = 1.15
"""Smaller contrast ratio that still decides for the stronger date when nothing else does."""

STANDS_OUT_RATIO = 2.5
"""Aerial: a region that clearly stands out in both dates (:data:`PRESENT`) with contrasts within this ratio, in
unchanged surroundings (or paved in both dates), was there before: its look changed (a roof repainted light grey
stands out more, but it stood out already; construction would have changed its surroundings too)."""

SAME_STRUCTURE = 0.5
"""Structure similarity from which a region present in both dates (contrast ratio within 3) is one surface
whose look changed: a state change."""

VERY_SAME_STRUCTURE = 0.75
"""Structure similarity from which a region is the same surface whatever its contrast ratio (a repainted roof
that stands out much more after than before)."""

KEPT_OUTLINE = 0.5
"""Outline persistence (:func:`outline_persistence`) from which a surface of bare-ground colour in the earlier
image that is another surface later was not bare ground but a roof with that outline, re-covered: a rusty-brown
roof turned white keeps its edges and ridge lines (0.59-0.74 on three such roofs in WHU-CD and LEVIR-CD). Of
220 new buildings labelled in LEVIR-CD and WHU-CD, 1 % reach it (median 0.21): their outline was not in the
earlier image."""

SHADOW_RING_M = 4.0
"""Width (m) of the ring around an object in which :func:`shadow_change` looks for its shadow: a house 3-6 m tall
casts one 1.7-10 m long under a sun 30-60 degrees high, so the ring holds at least its first 1.7 m."""

SHADOW_MAX_GSD = 1.0
"""Coarsest ground sample distance (m/px) at which a shadow is looked for: the ring is then 4 px wide or more. At
Sentinel-2's 10 m a house's shadow is a fraction of a pixel."""

SHADOWLESS = 0.015
"""Share of that ring newly dark (:func:`shadow_change`) below which an aerial object that appeared or went has
no height: a surface (a paved lot, a graded field, a planted slope), not a building. Learned-detector regions
of held-out LEVIR-CD and WHU-CD tiles (two models): of 168 on the labelled changes 2 % fall below it, of 109
off them 32 %. Twice this (0.03) would take 40 % off them, but 5 % on them: a detected region larger than its
building puts the ring on the car park around it, where the shadow is not."""

SHIFT_REACH_M = 6.0
"""How far (m) :func:`shifted_match` looks for a region's content in the other date: a misregistration of a few
metres, or a tall building leaning another way in an off-nadir view."""

_MIN_TEMPLATE_STD = 3.0
"""Grey-level spread under which a box has no pattern to find (a flat roof, open water): no match measured."""

_OUTLINE_BLUR_PX = 2.0
"""Misregistration (px of the full-resolution image) :func:`outline_persistence` forgives in :func:`measure`."""

GREENED_SIMILARITY = 0.35
"""Structure similarity from which a surface that turned green is the same surface (a planter's grass)."""

RESURFACED_SIMILARITY = 0.3
"""Structure similarity from which a grey surface that is grey again is the same surface (road markings)."""

BUILT_ON_GROUND = 10.0
"""Contrast a new surface on bare ground (or a surface that gave way to bare ground) needs in its date."""

SURFACE_CHANGE = 20.0
"""Lightness change (Lab L) that, on bare ground, shows something was built even where the new surface does not
stand out from its (also new) surroundings: a street of new roofs where there was bright soil."""

VEHICLE_MAX_FRACTION = 0.0012
"""Largest area share of an aerial candidate read as a vehicle when it sits on grey (road) surroundings."""

LAWN_TEXTURE = 5.5
"""Lightness spread below which a green surface is a lawn (smooth) rather than tree canopies (shaded)."""

_MAX_WINDOW = 160
"""Longest side (px) a window is measured at; larger windows are subsampled by an integer step."""

_NEIGHBOURS = 2
"""Neighbouring candidates a cue mentions (plus one phrase about the surroundings)."""

_NEIGHBOUR_CONFIDENCE = 0.25
"""Detector confidence a candidate needs to serve as a landmark for its neighbours."""


# ---------------------------------------------------------------------------------------------------------
# Words from numbers
# ---------------------------------------------------------------------------------------------------------

_PALETTE_NAMES = list(PALETTE)
_PALETTE_LAB = cv2.cvtColor(np.array([list(PALETTE.values())], np.float32) / 255.0, cv2.COLOR_RGB2Lab)[0]


def colour_name(lab: Sequence[float] | np.ndarray) -> str:
    """The :data:`PALETTE` name nearest to a mean CIE Lab colour (L in 0..100)."""
    difference = _PALETTE_LAB - np.asarray(lab, np.float32)[None, :]
    distances = difference[:, 0] ** 2 + CHROMA_WEIGHT * (difference[:, 1] ** 2 + difference[:, 2] ** 2)
    return _PALETTE_NAMES[int(np.argmin(distances))]


def size_word(area_fraction: float) -> Size:
    """Size word for a region covering ``area_fraction`` of the image (see :data:`SIZE_WORDS`)."""
    for limit, word in SIZE_WORDS:
        if area_fraction < limit:
            return word
    return "huge"


def shape_word(mask: np.ndarray) -> Shape:
    """Shape of a bool mask: ``elongated`` when its rotated bounding rectangle is at least
    :data:`ELONGATED_ASPECT` times longer than wide, ``compact`` when it fills at least :data:`COMPACT_SOLIDITY`
    of its convex hull, else ``irregular`` (also for an empty mask)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return "irregular"
    points = np.concatenate(contours)
    _, (side_a, side_b), _ = cv2.minAreaRect(points)
    # +1: contour points are pixel centres, so a pixel region reaches half a pixel further on each side
    long_side, short_side = max(side_a, side_b) + 1.0, min(side_a, side_b) + 1.0
    if long_side / short_side >= ELONGATED_ASPECT:
        return "elongated"
    hull = cv2.convexHull(points)
    hull_area = cv2.contourArea(hull) + cv2.arcLength(hull, True) / 2.0 + 1.0
    return "compact" if float(mask.sum()) / hull_area >= COMPACT_SOLIDITY else "irregular"


def excess_green(rgb: np.ndarray) -> np.ndarray:
    """Excess-green index (2g - r - b) / (r + g + b) of each pixel of an RGB array (0 for black pixels)."""
    values = rgb.astype(np.float32)
    total = values.sum(axis=-1)
    index = 2.0 * values[..., 1] - values[..., 0] - values[..., 2]
    return np.asarray(np.divide(index, total, out=np.zeros_like(total), where=total > 0), np.float32)


# ---------------------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DateLook:
    """How a region looks at one date.

    Attributes:
        colour: colour name of the mean inside.
        surroundings: colour name of the mean of a ring around it.
        greenness: mean excess-green index inside.
        texture: standard deviation of Lab lightness inside.
        contrast: how much the region stands out: the geometric mean of its colour difference from the ring
            (Lab distance of the means plus the difference of lightness spreads, as
            :func:`craft_agent.change.objects.contrast_with_surroundings`) and the colour step along its
            outline (mean Lab gradient on a band straddling the boundary). The outline term keeps a region
            that straddles two different backgrounds (a wall and a pavement) from standing out by its mean
            alone; the ring term keeps a textured patch from standing out by its edges alone.
        lightness: mean Lab lightness inside.
    """

    colour: str
    surroundings: str
    greenness: float
    texture: float
    contrast: float
    lightness: float


@dataclass(frozen=True)
class Measured:
    """What :func:`measure` finds about one candidate (everything of a cue but the neighbours)."""

    candidate: ChangeCandidate
    before: DateLook
    after: DateLook
    area_fraction: float
    size: Size
    shape: Shape
    centre: tuple[float, float]
    similarity: float
    outline_kept: float = 0.0
    shadow: tuple[float, float] | None = None
    shifted: tuple[float | None, float | None] = (None, None)
    extent_px: int = 0
    area_px: int = 0
    cut_by_border: bool = False


def _rle_counts(counts: str) -> list[int]:
    """Run lengths of a COCO compressed RLE string (pycocotools' ``rleFrString``, in Python)."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            char = ord(counts[position]) - 48
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            position += 1
            shift += 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def mask_window(mask: RLEMask, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """The part of an RLE mask inside the window [x0, x1) x [y0, y1), as a bool array.

    Decodes only the columns the window spans: pycocotools can only decode a whole mask, and a whole 1024 px
    mask per candidate would cost more than measuring the candidate.
    """
    height = mask.size[0]
    runs = np.asarray(_rle_counts(mask.counts), np.int64)
    ends = np.cumsum(runs)
    starts = ends - runs
    # runs alternate background / foreground, starting with background; pixels are in column-major order
    fg_starts, fg_ends = starts[1::2], ends[1::2]
    first, last = x0 * height, x1 * height
    keep = (fg_ends > first) & (fg_starts < last)
    edges = np.zeros(last - first + 1, np.int32)
    np.add.at(edges, np.clip(fg_starts[keep], first, last) - first, 1)
    np.add.at(edges, np.clip(fg_ends[keep], first, last) - first, -1)
    inside = np.cumsum(edges[:-1]) > 0
    return np.ascontiguousarray(inside.reshape(x1 - x0, height).T[y0:y1])


def _gradient(lab: np.ndarray) -> np.ndarray:
    """Colour gradient magnitude per pixel (Lab units per pixel: Sobel's gain of 4 for a step removed)."""
    squared = np.zeros(lab.shape[:2], np.float32)
    for channel in range(3):
        squared += cv2.Sobel(lab[..., channel], cv2.CV_32F, 1, 0) ** 2
        squared += cv2.Sobel(lab[..., channel], cv2.CV_32F, 0, 1) ** 2
    return np.sqrt(squared) / 4.0


def _look(rgb: np.ndarray, lab: np.ndarray, inside: np.ndarray, ring: np.ndarray, band: np.ndarray) -> DateLook:
    inner = lab[inside]
    inside_mean = inner.mean(axis=0)
    spread = float(inner[:, 0].std())
    if ring.any():
        around = lab[ring]
        ring_mean = around.mean(axis=0)
        against_ring = float(np.linalg.norm(inside_mean - ring_mean)) + abs(spread - float(around[:, 0].std()))
        outline = float(_gradient(lab)[band].mean()) if band.any() else 0.0
        contrast = math.sqrt(against_ring * outline)
    else:  # the region fills the whole image: nothing to stand out from
        ring_mean, contrast = inside_mean, 0.0
    return DateLook(
        colour=colour_name(inside_mean),
        surroundings=colour_name(ring_mean),
        greenness=float(excess_green(rgb[inside]).mean()),
        texture=spread,
        contrast=contrast,
        lightness=float(inside_mean[0]),
    )


def _region_window(
    candidate: ChangeCandidate, shape: tuple[int, int], margin: int
) -> tuple[int, int, int, int, np.ndarray]:
    """The window (x0, y0, x1, y1) of the candidate's box grown by ``margin`` px (clipped to the image), and the
    candidate's region in it: its mask when present and not empty, else (or when the mask lies outside its own
    box) the box."""
    height, width = shape
    box = candidate.box
    x0, y0 = max(0, box.x0 - margin), max(0, box.y0 - margin)
    x1, y1 = min(width, box.x1 + margin), min(height, box.y1 + margin)
    inside = np.zeros((y1 - y0, x1 - x0), bool)
    if candidate.mask is not None and candidate.mask.size == (height, width) and not candidate.mask.is_empty:
        inside = mask_window(candidate.mask, x0, y0, x1, y1)
    if not inside.any():
        inside[max(0, box.y0 - y0) : box.y1 - y0, max(0, box.x0 - x0) : box.x1 - x0] = True
    return x0, y0, x1, y1, inside


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def shifted_match(
    candidate: ChangeCandidate, pre: np.ndarray, post: np.ndarray, gsd: float
) -> tuple[float | None, float | None]:
    """(before, after): how well the candidate's box in the earlier (later) image is found in the other image
    within :data:`SHIFT_REACH_M` (best normalised correlation of the grey levels over all shifts). Near 1 when
    the content is still there, only displaced: a building that neither came nor went but moved in the image.
    None for a box without pattern (:data:`_MIN_TEMPLATE_STD`) or thinner than 4 px."""
    reach = max(1, round(SHIFT_REACH_M / gsd))
    height, width = pre.shape[:2]
    x0, y0, x1, y1 = candidate.box.as_xyxy()
    if min(x1 - x0, y1 - y0) < 4:
        return None, None
    sx0, sy0, sx1, sy1 = max(0, x0 - reach), max(0, y0 - reach), min(width, x1 + reach), min(height, y1 + reach)
    # only the search window is converted: this runs for every candidate of a pair
    grey = [
        cv2.cvtColor(np.ascontiguousarray(image[sy0:sy1, sx0:sx1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
        for image in (pre, post)
    ]
    matches: list[float | None] = []
    for own, other in ((grey[0], grey[1]), (grey[1], grey[0])):
        template = own[y0 - sy0 : y1 - sy0, x0 - sx0 : x1 - sx0]
        if float(template.std()) < _MIN_TEMPLATE_STD:
            matches.append(None)
            continue
        scores = cv2.matchTemplate(other, template, cv2.TM_CCOEFF_NORMED)
        matches.append(float(np.clip(np.nan_to_num(scores, nan=-1.0).max(), -1.0, 1.0)))
    return matches[0], matches[1]


def shadow_change(candidate: ChangeCandidate, pre: np.ndarray, post: np.ndarray, gsd: float) -> tuple[float, float]:
    """(gained, lost): the share of a :data:`SHADOW_RING_M` ring around the candidate that is dark (shadow) in
    the later image and not in the earlier one, and the reverse. Something with height that appeared casts a
    new shadow beside it; a surface that changed (paving, grading, planting) does not.

    Dark is below 0.6 x the median lightness of the window around the object, and at most 35 (Lab L), so a
    shadow falling on bright soil and one on grass both count, and a dark road does not. The window is the
    box with three ring widths around it, subsampled to about 320 px.
    """
    ring_px = max(2, round(SHADOW_RING_M / gsd))
    x0, y0, x1, y1, inside = _region_window(candidate, pre.shape[:2], 3 * ring_px)
    step = max(1, math.ceil(max(x1 - x0, y1 - y0) / (2 * _MAX_WINDOW)))
    small = inside[::step, ::step].astype(np.uint8)
    radius = max(1, round(ring_px / step))
    ring = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    ring = ring.astype(bool) & ~small.astype(bool)
    if not ring.any():
        return 0.0, 0.0
    dark = []
    for image in (pre, post):
        lightness = to_lab(np.ascontiguousarray(image[y0:y1:step, x0:x1:step]))[..., 0]
        dark.append(lightness < min(0.6 * float(np.median(lightness)), 35.0))
    dark_before, dark_after = dark
    return float((dark_after & ~dark_before)[ring].mean()), float((dark_before & ~dark_after)[ring].mean())


def _structure_tensor(lab: np.ndarray, blur: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel colour structure tensor (xx, yy, xy) of a Lab image, after a Gaussian blur of ``blur`` px."""
    xx = np.zeros(lab.shape[:2], np.float32)
    yy, xy = xx.copy(), xx.copy()
    for channel in range(3):
        smooth = cv2.GaussianBlur(np.ascontiguousarray(lab[..., channel], np.float32), (0, 0), blur)
        gx, gy = cv2.Sobel(smooth, cv2.CV_32F, 1, 0) / 4.0, cv2.Sobel(smooth, cv2.CV_32F, 0, 1) / 4.0
        xx += gx * gx
        yy += gy * gy
        xy += gx * gy
    return xx, yy, xy


def outline_persistence(lab_before: np.ndarray, lab_after: np.ndarray, inside: np.ndarray, blur: float = 2.0) -> float:
    """How much of a region's outline is the same edge in both dates: the normalised inner product of the two
    dates' colour structure tensors over a band of 2 px on either side of the outline (orientation counts,
    the sign of the step does not, so a roof that turned from darker to lighter than its surroundings keeps
    its outline).

    Near 1 when the outline (and the ridge lines along it) was there in both images, as for a re-covered
    roof; near 0 when one date has edges there that the other lacks, as for a house built on a bare lot.
    0 for a region without any edge on its outline. ``blur`` (px, a Gaussian's sigma) forgives that much
    misregistration; :func:`measure` passes 2 px of the full-resolution image, whatever its subsampling.
    """
    region = inside.astype(np.uint8)
    square = np.ones((3, 3), np.uint8)
    band = cv2.dilate(region, square, iterations=2).astype(bool) & ~cv2.erode(
        region, square, iterations=2, borderValue=0
    ).astype(bool)
    if not band.any():
        return 0.0
    before, after = _structure_tensor(lab_before, blur), _structure_tensor(lab_after, blur)
    shared = float((before[0] * after[0] + before[1] * after[1] + 2.0 * before[2] * after[2])[band].sum())
    norm_before = math.sqrt(float((before[0] ** 2 + before[1] ** 2 + 2.0 * before[2] ** 2)[band].sum()))
    norm_after = math.sqrt(float((after[0] ** 2 + after[1] ** 2 + 2.0 * after[2] ** 2)[band].sum()))
    if norm_before * norm_after <= 1e-9:
        return 0.0
    return max(0.0, min(1.0, shared / (norm_before * norm_after)))


def structure_similarity(lightness_before: np.ndarray, lightness_after: np.ndarray, inside: np.ndarray) -> float:
    """Correlation of the lightness pattern inside ``inside`` between the dates, best over shifts of up to
    :data:`SIMILARITY_SHIFT_PX` px (a small misregistration).

    Near 1 when the same surface is still there (a roof repainted keeps its slopes and outline, a relit field
    its texture), near 0 or below when something else replaced it; 0 for a region without any pattern.
    """
    before = lightness_before[inside].astype(np.float64)
    before -= before.mean()
    norm_before = float(np.sqrt((before * before).sum()))
    if norm_before < 1e-3 * max(1, before.size):
        return 0.0
    pad = SIMILARITY_SHIFT_PX
    padded = cv2.copyMakeBorder(lightness_after, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    height, width = inside.shape
    best: float | None = None
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            after = padded[dy : dy + height, dx : dx + width][inside].astype(np.float64)
            after -= after.mean()
            norm_after = float(np.sqrt((after * after).sum()))
            if norm_after > 0:
                correlation = float((before * after).sum()) / (norm_before * norm_after)
                best = correlation if best is None else max(best, correlation)
    if best is None:
        return 0.0
    return max(-1.0, min(1.0, best))


def _check_images(pre: np.ndarray, post: np.ndarray) -> None:
    if pre.shape != post.shape or pre.ndim != 3 or pre.shape[2] != 3:
        raise ValueError(
            f"change cues need two RGB images (H, W, 3) of one shape; got {pre.shape} and {post.shape}. "
            "Fix: pass the co-registered pre and post images of the pair."
        )


def measure(
    candidate: ChangeCandidate, pre: np.ndarray, post: np.ndarray, ring_px: int = 4, gsd: float | None = None
) -> Measured:
    """Colours, greenness, texture, contrast, size, shape and structure similarity of one candidate.

    Args:
        candidate: the change; its mask is used when present and not empty, else its whole box.
        pre, post: the earlier and later RGB uint8 images (H, W, 3) of one shape.
        ring_px: width of the ring of surroundings in pixels.
        gsd: ground sample distance (m/px); the shadow (:func:`shadow_change`) is measured only when known and
            at most :data:`SHADOW_MAX_GSD`.

    Raises:
        ValueError: when the images differ in shape or are not RGB.
    """
    _check_images(pre, post)
    height, width = pre.shape[:2]
    box = candidate.box
    x0, y0, x1, y1, inside = _region_window(candidate, (height, width), ring_px + 2)
    area = int(inside.sum())
    step = max(1, math.ceil(max(x1 - x0, y1 - y0) / _MAX_WINDOW))
    small = inside[::step, ::step]
    if not small.any():  # a sliver the subsampling missed: measure at full resolution
        step, small = 1, inside
    ring_width = max(1, round(ring_px / step))
    region = small.astype(np.uint8)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_width + 1, 2 * ring_width + 1))
    ring = cv2.dilate(region, disc).astype(bool) & ~small
    square = np.ones((3, 3), np.uint8)
    band = cv2.dilate(region, square).astype(bool) & ~cv2.erode(region, square, borderValue=0).astype(bool)
    rgb_before, rgb_after = pre[y0:y1:step, x0:x1:step], post[y0:y1:step, x0:x1:step]
    lab_before, lab_after = to_lab(rgb_before), to_lab(rgb_after)
    ys, xs = np.nonzero(inside)
    fraction = min(1.0, area / float(height * width))
    return Measured(
        candidate=candidate,
        before=_look(rgb_before, lab_before, small, ring, band),
        after=_look(rgb_after, lab_after, small, ring, band),
        area_fraction=fraction,
        size=size_word(fraction),
        shape=shape_word(small),
        centre=(float(xs.mean()) + x0, float(ys.mean()) + y0),
        similarity=structure_similarity(lab_before[..., 0], lab_after[..., 0], small),
        outline_kept=outline_persistence(lab_before, lab_after, small, blur=max(1.0, _OUTLINE_BLUR_PX / step)),
        shadow=shadow_change(candidate, pre, post, gsd) if gsd and gsd <= SHADOW_MAX_GSD else None,
        shifted=shifted_match(candidate, pre, post, gsd) if gsd else (None, None),
        extent_px=int(max(xs.max() - xs.min(), ys.max() - ys.min())) + 1,
        area_px=area,
        cut_by_border=box.x0 <= 0 or box.y0 <= 0 or box.x1 >= width or box.y1 >= height,
    )


# ---------------------------------------------------------------------------------------------------------
# Reading the facts
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeJudgement:
    """A change type read from a cue, with the reason in a few words (used in answers' ``reason``)."""

    change_type: ChangeType
    reason: str


def is_vegetation(colour: str, greenness: float, texture: float = 0.0) -> bool:
    """Whether a region of this colour name, excess-green index and lightness spread (``texture``) is vegetation
    (see :data:`VEGETATION_EXG`): green-named, named by its darkness (a canopy in shade reads "dark grey" or
    "black" by its lightness, its excess green still says leaf; asphalt and dark roofs stay below 0.05), or,
    whatever its name, clearly green (:data:`CANOPY_EXG`) and textured like a canopy (:data:`LAWN_TEXTURE`):
    lit leaves and shade can average to teal, while water and green roofs are smooth."""
    if colour in _LEAFY_COLOURS:
        return greenness >= VEGETATION_EXG
    return greenness >= CANOPY_EXG and texture >= LAWN_TEXTURE


def vegetated(cue: ChangeCue, later: bool) -> bool:
    """Whether the cue's region is vegetation in the later (else the earlier) image (:func:`is_vegetation`)."""
    if later:
        return is_vegetation(cue.colour_after, cue.greenness_after, cue.texture_after)
    return is_vegetation(cue.colour_before, cue.greenness_before, cue.texture_before)


def _bare_of_vegetation(cue: ChangeCue, later: bool) -> bool:
    """Clearly no vegetation at that date: little excess green (:data:`BARE_EXG`), or neither a leafy colour nor
    a green canopy's texture (the margin between :data:`BARE_EXG` and :data:`VEGETATION_EXG` is neither)."""
    colour, greenness = (cue.colour_after, cue.greenness_after) if later else (cue.colour_before, cue.greenness_before)
    return greenness < BARE_EXG or (colour not in _LEAFY_COLOURS and not vegetated(cue, later))


def looks_like_vehicle(cue: ChangeCue, domain: Domain = Domain.RS) -> bool:
    """Whether a candidate is car-sized on grey (road or car park) surroundings in both dates, and green in
    neither (vegetation in shade also sits on dark surroundings).

    Aerial: :data:`VEHICLE_LENGTH_M` long when the ground sample distance is known, else at most
    :data:`VEHICLE_MAX_FRACTION` of the image (a resolution-dependent size: about 30 x 40 px at 1024 px, which
    is also a house at 0.5 m/px). Street level: a compact or elongated region on dark grey (the road band).
    """
    if vegetated(cue, later=False) or vegetated(cue, later=True):  # cars are not green; trees in shade are
        return False
    on_grey = cue.surroundings_before in GREY_COLOURS and cue.surroundings_after in GREY_COLOURS
    if domain == Domain.NS:
        road = {"dark grey", "grey", "black"}
        return cue.surroundings_before in road and cue.surroundings_after in road and cue.shape != "irregular"
    if cue.length_m is not None:
        return on_grey and VEHICLE_LENGTH_M[0] <= cue.length_m <= VEHICLE_LENGTH_M[1]
    return on_grey and cue.area_fraction < VEHICLE_MAX_FRACTION


VEHICLE_LENGTH_M = (2.5, 7.0)
"""Length of a car or van seen from above, in metres (cars are about 3-6 m long)."""


def presence_ratio(cue: ChangeCue) -> float:
    """How much more the region stands out after than before (> 1: more after)."""
    return (cue.contrast_after + 1.0) / (cue.contrast_before + 1.0)


def judge_change_type(cue: ChangeCue, domain: Domain = Domain.RS) -> TypeJudgement:
    """Appear, disappear or state change, from the cue's fields alone (rules in order, first match wins):

    1. aerial car-sized region on the road (:func:`looks_like_vehicle`): vehicles come and go; the date it
       stands out more in decides;
    2. the same structure in both dates (similarity >= :data:`VERY_SAME_STRUCTURE`, contrast in both): a
       state change (a repainted roof keeps its slopes);
    3. vegetation before, none after: a smooth lawn turned into something else is a state change of the
       ground; textured vegetation giving way to bare ground, or to nothing that stands out, was cleared;
       aerial, giving way to a smoother surface that stands out, something was built where it grew (appear:
       houses built where trees stood; trees that lost their leaves stay as textured as they were);
    4. vegetation after, none before: turned green (state change) when the same pattern or a visible dry
       surface was there, else new vegetation (appear);
    5. aerial, bare ground before and another surface after, standing out or much lighter or darker
       (:data:`SURFACE_CHANGE`): built on (appear), unless its outline was already there (``outline_kept`` >=
       :data:`KEPT_OUTLINE`): then the ground-coloured surface was a roof that was re-covered (a rusty-brown
       roof turned white), a state change; the reverse: demolished or cleared (disappear), whatever the
       outline (labelled demolitions keep little of it, 0.07-0.39, but the outline test on every appearance
       and demolition cost generated scenes 0.09 of type accuracy: see the README);
    6. the same structure (>= :data:`SAME_STRUCTURE`) standing out in both dates with a contrast ratio
       within 3: state change; aerial grey surfaces in both dates with some shared structure, or elongated
       (a road resurfaced, fresh asphalt hiding the old markings): state change, unless a compact one stands
       out in one date only (:data:`ONE_SIDED_RATIO`: a new light-grey roof on grey ground); a strip of road
       may stand out only once freshly paved;
    7. aerial, standing out in both dates (:data:`PRESENT`) within :data:`STANDS_OUT_RATIO`, in unchanged
       surroundings or paved in both dates: state change;
    8. presence: a contrast ratio of :data:`ONE_SIDED_RATIO` decides for the stronger date; present in
       both (:data:`BOTH_PRESENT`): state change; a ratio of :data:`LEANING_RATIO` decides; else state change.

    ``structure_similarity`` missing (None) counts as 0.
    """
    before, after = cue.contrast_before, cue.contrast_after
    similarity = cue.structure_similarity or 0.0
    ratio = presence_ratio(cue)
    aerial = domain != Domain.NS
    if aerial and looks_like_vehicle(cue, domain):
        if ratio >= 1:
            return TypeJudgement(ChangeType.APPEAR, "a car-sized object on the road stands out only later")
        return TypeJudgement(ChangeType.DISAPPEAR, "a car-sized object on the road stood out only earlier")
    if similarity >= VERY_SAME_STRUCTURE and min(before, after) >= PRESENT / 2:
        return TypeJudgement(ChangeType.STATE_CHANGE, "the same structure is there in both images, its look changed")
    green_before, green_after = vegetated(cue, later=False), vegetated(cue, later=True)
    if green_before and _bare_of_vegetation(cue, later=True):
        if cue.texture_before < LAWN_TEXTURE and cue.colour_before == "green":
            return TypeJudgement(ChangeType.STATE_CHANGE, "a smooth lawn turned into another surface")
        if cue.colour_after in GROUND_COLOURS or after < PRESENT:
            return TypeJudgement(ChangeType.DISAPPEAR, "vegetation gave way to bare ground")
        if aerial and cue.texture_after < cue.texture_before:
            return TypeJudgement(ChangeType.APPEAR, "a smooth surface that stands out replaced the vegetation")
    if green_after and _bare_of_vegetation(cue, later=False):
        if similarity >= GREENED_SIMILARITY or (before >= PRESENT and cue.colour_before in GROUND_COLOURS):
            return TypeJudgement(ChangeType.STATE_CHANGE, "a dry surface turned green")
        return TypeJudgement(ChangeType.APPEAR, "vegetation where there was none")
    if aerial:
        ground_before, ground_after = cue.colour_before in GROUND_COLOURS, cue.colour_after in GROUND_COLOURS
        built = (after >= BUILT_ON_GROUND and ratio >= 1) or abs(cue.brightness_change) >= SURFACE_CHANGE
        if ground_before and not ground_after and built:
            if (cue.outline_kept or 0.0) >= KEPT_OUTLINE:
                return TypeJudgement(ChangeType.STATE_CHANGE, "its outline was there before: a roof, not bare ground")
            return TypeJudgement(ChangeType.APPEAR, "something was built on bare ground")
        if ground_after and not ground_before and before >= BUILT_ON_GROUND and ratio <= 1:
            return TypeJudgement(ChangeType.DISAPPEAR, "only bare ground is left where something stood")
    if similarity >= SAME_STRUCTURE and min(before, after) >= PRESENT and 1 / 3 <= ratio <= 3:
        return TypeJudgement(ChangeType.STATE_CHANGE, "the same structure stands out in both images")
    paved = not (green_before or green_after)  # a grey surface with leaves on it is a canopy in shade
    if (
        aerial
        and paved
        and cue.colour_before in GREY_COLOURS
        and cue.colour_after in GREY_COLOURS
        and (similarity >= RESURFACED_SIMILARITY or cue.shape == "elongated")
        and cue.size not in ("tiny", "small")
        and (cue.shape == "elongated" or 1 / ONE_SIDED_RATIO < ratio < ONE_SIDED_RATIO)
    ):
        return TypeJudgement(ChangeType.STATE_CHANGE, "a paved surface was resurfaced")
    same_setting = cue.surroundings_before == cue.surroundings_after or (
        paved and cue.colour_before in GREY_COLOURS and cue.colour_after in GREY_COLOURS
    )
    if aerial and same_setting and min(before, after) >= PRESENT and 1 / STANDS_OUT_RATIO <= ratio <= STANDS_OUT_RATIO:
        return TypeJudgement(ChangeType.STATE_CHANGE, "it stood out before too: the same thing changed its look")
    if ratio >= ONE_SIDED_RATIO:
        return TypeJudgement(ChangeType.APPEAR, "it stands out only in the later image")
    if ratio <= 1 / ONE_SIDED_RATIO:
        return TypeJudgement(ChangeType.DISAPPEAR, "it stood out only in the earlier image")
    if min(before, after) >= BOTH_PRESENT:
        return TypeJudgement(ChangeType.STATE_CHANGE, "it stands out in both images with another look")
    if ratio >= LEANING_RATIO:
        return TypeJudgement(ChangeType.APPEAR, "it stands out more in the later image")
    if ratio <= 1 / LEANING_RATIO:
        return TypeJudgement(ChangeType.DISAPPEAR, "it stood out more in the earlier image")
    return TypeJudgement(ChangeType.STATE_CHANGE, "it looks different in the two images")


def infer_change_type(cue: ChangeCue, domain: Domain = Domain.RS) -> ChangeType:
    """The change type of :func:`judge_change_type`, without its reason."""
    return judge_change_type(cue, domain).change_type


OBJECT_LABELS = frozenset({Category.BUILDING, Category.VEHICLE})
"""Categories whose change labels mark objects that exist in one date only: a building-change dataset
(LEVIR-CD, WHU-CD, S2Looking) labels buildings that were built or demolished, not repainted ones."""


def labelled_change_type(cue: ChangeCue, judged: ChangeType) -> ChangeType:
    """The type of a change given its judged type and what its labels say: the labels' own type when they give
    one; else the judged type, except that an object label (:data:`OBJECT_LABELS`) is never a state change:
    it appeared when it stands out more in the later image, else disappeared."""
    if cue.label_type is not None:
        return cue.label_type
    if judged is ChangeType.STATE_CHANGE and Category.parse(cue.label_category) in OBJECT_LABELS:
        return ChangeType.APPEAR if presence_ratio(cue) >= 1 else ChangeType.DISAPPEAR
    return judged


def cue_change_type(cue: ChangeCue, domain: Domain = Domain.RS) -> ChangeType:
    """The change type a cue is drafted with: :func:`judge_change_type`'s, as the labels amend it
    (:func:`labelled_change_type`)."""
    return labelled_change_type(cue, infer_change_type(cue, domain))


def infer_category(cue: ChangeCue, change_type: ChangeType, domain: Domain = Domain.RS) -> Category:
    """A heuristic category from colour, texture, greenness and shape in the date where the object exists
    (later for appear, earlier for disappear, both for a state change).

    Aerial: vehicle (car-sized on the road), vegetation (green), water (teal), road (grey and elongated, or
    grey in both dates for a state change), ground (a lawn turned into another surface, or bare ground in
    both dates), roof (another state change), building (another appear / disappear that casts a shadow:
    where the ground sample distance is known, one without a new shadow beside it (:data:`SHADOWLESS`) has no
    height and is a paved surface, road, or ground instead, and one smaller than :data:`BUILDING_MIN_M2` is an
    object). Street level:
    vegetation, vehicle (on the road band), facade (a state change), object (anything else that comes or
    goes).
    """
    later = change_type is ChangeType.APPEAR
    colour = cue.colour_after if later else cue.colour_before
    green_before, green_after = vegetated(cue, later=False), vegetated(cue, later=True)
    green = green_after if later else green_before
    if domain == Domain.NS:
        if green or (change_type is ChangeType.STATE_CHANGE and green_after):
            return Category.VEGETATION
        if change_type is ChangeType.STATE_CHANGE:
            return Category.FACADE
        return Category.VEHICLE if looks_like_vehicle(cue, domain) else Category.OBJECT
    if looks_like_vehicle(cue, domain) and change_type is not ChangeType.STATE_CHANGE:
        return Category.VEHICLE
    if change_type is ChangeType.STATE_CHANGE:
        if green_before and cue.texture_before < LAWN_TEXTURE and cue.colour_before == "green":
            return Category.GROUND
        if green_before or green_after:
            return Category.VEGETATION
        if cue.colour_before in GROUND_COLOURS and cue.colour_after in GROUND_COLOURS:
            return Category.GROUND
        if cue.colour_before in GREY_COLOURS and cue.colour_after in GREY_COLOURS and cue.size not in ("tiny", "small"):
            return Category.ROAD
        return Category.ROOF
    if green:
        return Category.VEGETATION
    if colour == "teal":
        return Category.WATER
    if colour in GREY_COLOURS and cue.shape == "elongated" and cue.size not in ("tiny", "small"):
        return Category.ROAD
    shadow = cue.shadow_gained if change_type is ChangeType.APPEAR else cue.shadow_lost
    if shadow is not None and shadow < SHADOWLESS:  # no height: a surface that was paved, graded or planted
        return Category.ROAD if colour in GREY_COLOURS else Category.GROUND
    if cue.area_m2 is not None and cue.area_m2 < BUILDING_MIN_M2 and not cue.cut_by_border:
        return Category.OBJECT  # smaller than a garage: a container, a pile, a tarp; a house is 8-30 m long
    return Category.BUILDING


BUILDING_MIN_M2 = 15.0
"""The smallest footprint named a building, in square metres: a single garage (about 3 x 5 m). A smaller
change that came or went and is no car is an object (a container, a pile, a tarp). An object cut by the
image's edge may be a building's corner and is not held to it."""


# ---------------------------------------------------------------------------------------------------------
# Neighbours
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Landmark:
    """A candidate as a neighbour sees it: where it is and how to name it."""

    candidate_id: str
    box: tuple[int, int, int, int]
    centre: tuple[float, float]
    phrase: str
    confidence: float


def _landmark(cue: ChangeCue, centre: tuple[float, float], change_type: ChangeType, domain: Domain) -> _Landmark:
    return _Landmark(
        cue.candidate_id, cue.box.as_xyxy(), centre, landmark_phrase(cue, change_type, domain), cue.confidence
    )


def landmark_phrase(cue: ChangeCue, change_type: ChangeType, domain: Domain) -> str:
    """How a neighbour's expression names this change ("the new red-roofed building", "the former pond"); empty
    for a state change, which is no landmark."""
    colour = cue.colour_before if change_type is ChangeType.DISAPPEAR else cue.colour_after
    category = Category.parse(cue.category_hint)
    noun = category.nouns(domain)[0][0] if category else "structure"
    if category is Category.BUILDING:
        phrase = f"the {colour.replace(' ', '-')}-roofed building"
    elif category in (Category.VEGETATION, Category.GROUND, Category.WATER):
        phrase = f"the {noun}"
    else:
        phrase = f"the {colour} {noun}"
    # A reader takes "the grey-roofed building" for any grey-roofed building in the image, changed or not:
    # a landmark is named as a change ("the new ...", "the former ..."), so that only changes can answer to it.
    # A changed state ("the grey roof" repainted) has no such word and is no landmark.
    if change_type is ChangeType.DISAPPEAR:
        phrase = phrase.replace("the ", "the former ", 1)
    elif change_type is ChangeType.APPEAR:
        phrase = phrase.replace("the ", "the new ", 1)
    else:
        phrase = ""
    return phrase


def _box_gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    dx = max(0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0, max(a[1], b[1]) - min(a[3], b[3]))
    return math.hypot(dx, dy)


def _relation(target: _Landmark, other: _Landmark, domain: Domain) -> str:
    """Where ``target`` lies relative to ``other``, as a preposition."""
    size = min(other.box[2] - other.box[0], other.box[3] - other.box[1])
    if _box_gap(target.box, other.box) <= max(6.0, 0.5 * size):
        return "next to"
    dx = target.centre[0] - other.centre[0]
    dy = target.centre[1] - other.centre[1]
    if domain == Domain.NS:
        if abs(dx) >= abs(dy):
            return "left of" if dx < 0 else "right of"
        return "above" if dy < 0 else "below"
    if abs(dx) >= abs(dy):
        return "west of" if dx < 0 else "east of"
    return "north of" if dy < 0 else "south of"


_SURFACES = frozenset({Category.ROAD, Category.GROUND, Category.ROOF, Category.FACADE, Category.WATER})


def _surroundings_phrase(cue: ChangeCue, domain: Domain) -> str | None:
    """A phrase about the stable structure around the region (same ring colour in both dates), or None."""
    if cue.surroundings_before != cue.surroundings_after or cue.category_hint in _SURFACES:
        return None  # the ring changed too, or the region is itself a surface ("the road beside the road")
    ring = cue.surroundings_before
    vehicle = cue.category_hint is Category.VEHICLE
    if domain == Domain.NS:
        if ring in ("dark grey", "grey", "black"):
            return "on the road" if vehicle else "by the road"
        if ring == "light grey":
            return "on the pavement"
        if ring in ("light blue", "white"):
            return "against the sky"
        return f"in front of the {ring} wall"
    if ring in ("grey", "dark grey", "black"):
        return "on the road" if vehicle else "beside the road"
    if ring in ("light grey", "white"):
        return "on paved ground"
    if ring in ("green", "dark green"):
        return "surrounded by grass"
    if ring in GROUND_COLOURS or ring == "brown":
        return "on bare ground"
    if ring == "teal":
        return "by the water"
    return None


def neighbour_phrases(
    target: _Landmark,
    cue: ChangeCue,
    landmarks: Sequence[_Landmark],
    domain: Domain,
    ambiguous: frozenset[str] = frozenset(),
) -> list[str]:
    """Up to three phrases: the nearest confident candidates (not overlapping the target) with a direction
    word, then the stable surroundings. A landmark whose phrase is in ``ambiguous`` (it names several of the
    pair's changes: "the new dark-grey-roofed building" among forty) locates nothing and is not used."""
    phrases: list[str] = []
    nearby = [
        other
        for other in landmarks
        if other.candidate_id != target.candidate_id
        and other.phrase
        and other.phrase not in ambiguous
        and other.confidence >= _NEIGHBOUR_CONFIDENCE
        and not _boxes_overlap(target.box, other.box)
    ]
    nearby.sort(key=lambda other: (_box_gap(target.box, other.box), other.candidate_id))
    reach = 3.0 * max(target.box[2] - target.box[0], target.box[3] - target.box[1], 16)
    for other in nearby:
        if len(phrases) == _NEIGHBOURS or _box_gap(target.box, other.box) > reach:
            break
        phrase = f"{_relation(target, other, domain)} {other.phrase}"
        if phrase not in phrases:
            phrases.append(phrase)
    around = _surroundings_phrase(cue, domain)
    if around:
        phrases.append(around)
    return phrases[:3]


def _boxes_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# ---------------------------------------------------------------------------------------------------------
# Cues
# ---------------------------------------------------------------------------------------------------------


def _cue_without_neighbours(measured: Measured, domain: Domain, gsd: float | None = None) -> ChangeCue:
    candidate = measured.candidate
    before, after = measured.before, measured.after
    cue = ChangeCue(
        candidate_id=candidate.id,
        grid_cell=candidate.grid_cell,
        box=candidate.box,
        detector_type=candidate.change_type,
        confidence=min(1.0, max(0.0, float(candidate.scores.get("confidence", 0.0)))),
        area_fraction=round(measured.area_fraction, 6),
        size=measured.size,
        shape=measured.shape,
        cut_by_border=measured.cut_by_border,
        colour_before=before.colour,
        colour_after=after.colour,
        surroundings_before=before.surroundings,
        surroundings_after=after.surroundings,
        greenness_before=round(before.greenness, 4),
        greenness_after=round(after.greenness, 4),
        texture_before=round(before.texture, 3),
        texture_after=round(after.texture, 3),
        contrast_before=round(before.contrast, 3),
        contrast_after=round(after.contrast, 3),
        brightness_change=round(after.lightness - before.lightness, 3),
        structure_similarity=round(measured.similarity, 4),
        outline_kept=round(measured.outline_kept, 4),
        shadow_gained=round(measured.shadow[0], 4) if measured.shadow else None,
        shadow_lost=round(measured.shadow[1], 4) if measured.shadow else None,
        shifted_match_before=_rounded(measured.shifted[0]),
        shifted_match_after=_rounded(measured.shifted[1]),
        length_m=round(measured.extent_px * gsd, 2) if gsd else None,
        area_m2=round(measured.area_px * gsd * gsd, 2) if gsd else None,
        labelled=bool(candidate.evidence.get("labelled")),
        label_type=candidate.change_type if candidate.evidence.get("label_typed") else None,
        label_category=candidate.category if candidate.evidence.get("labelled") else None,
    )
    change_type = cue_change_type(cue, domain)
    hint = Category.parse(cue.label_category) or infer_category(cue, change_type, domain)
    return cue.model_copy(update={"category_hint": hint})


def _landmark_of(cue: ChangeCue, measured: Measured, domain: Domain) -> _Landmark:
    # typed as its own triplet is (labels first): a labelled new house is "the new house" to its neighbours too
    return _landmark(cue, measured.centre, cue_change_type(cue, domain), domain)


def change_cue(
    candidate: ChangeCandidate,
    pre: np.ndarray,
    post: np.ndarray,
    others: list[ChangeCandidate] | None = None,
    ring_px: int = 4,
    domain: Domain = Domain.RS,
    gsd: float | None = None,
) -> ChangeCue:
    """Every measured fact about one candidate, as the agent shows it to the language model.

    Args:
        candidate: the change (its mask when present, else its box).
        pre, post: the earlier and later RGB uint8 images (H, W, 3) of the pair.
        others: the pair's other candidates; the nearest ones (by box) are measured too and named in
            ``neighbours``. For a whole pair prefer :func:`change_cues`, which measures each candidate once.
        ring_px: width of the ring of surroundings in pixels; the thresholds of :func:`judge_change_type` were
            set with the default 4 in both domains.
        domain: aerial (``Domain.RS``) or street level (``Domain.NS``): which categories and direction words apply.
        gsd: ground sample distance (m/px), when known: sizes are then also given in metres.

    Returns:
        The cue: colour names inside and around in both dates, greenness, texture, contrast, brightness
        change, size and shape words, structure similarity, a category hint and up to three neighbour
        phrases.

    Raises:
        ValueError: when the images differ in shape or are not RGB.
    """
    measured = measure(candidate, pre, post, ring_px, gsd)
    cue = _cue_without_neighbours(measured, domain, gsd)
    target = _landmark_of(cue, measured, domain)
    box = candidate.box.as_xyxy()
    # only candidates that can serve as landmarks are measured: confident ones apart from this one
    eligible = [
        other
        for other in others or []
        if other.id != candidate.id
        and other.scores.get("confidence", 0.0) >= _NEIGHBOUR_CONFIDENCE
        and not _boxes_overlap(box, other.box.as_xyxy())
    ]
    nearest = heapq.nsmallest(_NEIGHBOURS, eligible, key=lambda other: (_box_gap(box, other.box.as_xyxy()), other.id))
    landmarks = []
    for other in nearest:
        other_measured = measure(other, pre, post, ring_px, gsd)
        other_cue = _cue_without_neighbours(other_measured, domain, gsd)
        landmarks.append(_landmark_of(other_cue, other_measured, domain))
    ambiguous = _shared_phrases(landmarks)
    return cue.model_copy(update={"neighbours": neighbour_phrases(target, cue, landmarks, domain, ambiguous)})


def _shared_phrases(landmarks: Sequence[_Landmark]) -> frozenset[str]:
    """Landmark phrases that name more than one of the pair's changes."""
    counts = Counter(landmark.phrase for landmark in landmarks)
    return frozenset(phrase for phrase, count in counts.items() if count > 1)


def change_cues(
    candidates: Sequence[ChangeCandidate],
    pre: np.ndarray,
    post: np.ndarray,
    ring_px: int = 4,
    domain: Domain = Domain.RS,
    gsd: float | None = None,
) -> list[ChangeCue]:
    """The cues of all candidates of one pair, in order; each candidate is measured once and the others serve
    as its neighbours (see :func:`change_cue` for the arguments)."""
    measured = [measure(candidate, pre, post, ring_px, gsd) for candidate in candidates]
    cues = [_cue_without_neighbours(m, domain, gsd) for m in measured]
    landmarks = [_landmark_of(cue, m, domain) for cue, m in zip(cues, measured, strict=True)]
    if not landmarks:
        return []
    boxes = np.array([landmark.box for landmark in landmarks], np.float64)
    ambiguous = _shared_phrases(landmarks)
    result = []
    for index, (cue, target) in enumerate(zip(cues, landmarks, strict=True)):
        # box gaps to every other candidate at once; only the few nearest are phrased
        dx = np.maximum(0.0, np.maximum(boxes[:, 0], boxes[index, 0]) - np.minimum(boxes[:, 2], boxes[index, 2]))
        dy = np.maximum(0.0, np.maximum(boxes[:, 1], boxes[index, 1]) - np.minimum(boxes[:, 3], boxes[index, 3]))
        order = np.argsort(np.hypot(dx, dy), kind="stable")[: 8 * _NEIGHBOURS]
        nearby = [landmarks[int(k)] for k in order]
        neighbours = neighbour_phrases(target, cue, nearby, domain, ambiguous)
        result.append(cue.model_copy(update={"neighbours": neighbours}))
    return result
