"""The audit page's target view: both dates cropped to the target, its mask outlined with a light fill.

At the page's fit zoom a thin target is a barely visible line and a large one hides the roof the expression
describes under the brush layer. The view zooms to the target's box plus a margin, draws the outline (2 px)
and a fill, and puts the two dates side by side, earlier left, so the auditor judges the mask at a glance;
the brush layers below stay the place to edit it. A no-target triplet shows both whole images.

Label Studio 1.23 has no opacity control for masks, so the page gets the view at several fill opacities
(:data:`FILL_OPACITIES`, a light one first) as pages of one image: the auditor steps through them.
"""

from __future__ import annotations

import cv2
import numpy as np

from craft_agent.models import Triplet

VIEW_HEIGHT = 320
"""Height of each date's crop in the view (px)."""
OUTLINE_BGR = (85, 45, 255)  # the page's target colour, #ff2d55
FILL_OPACITIES = (0.25, 0.0, 0.5)
"""The fills the page offers, in the order it shows them: light, outline only, strong."""
GAP = 8


def crop_box(mask: np.ndarray, margin: float = 0.6, least: int = 24) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the mask's box grown by ``margin`` of its size (at least ``least`` px) on each side,
    made square where the image allows; the whole image for an empty mask."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return 0, 0, width, height
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    side = max(x1 - x0, y1 - y0)
    side = side + 2 * max(least, int(margin * side))
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    across, down = min(side, width), min(side, height)
    left = int(min(max(0, cx - across // 2), width - across))
    top = int(min(max(0, cy - down // 2), height - down))
    return left, top, left + across, top + down


def _panel(
    image_rgb: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], draw: bool, fill: float
) -> np.ndarray:
    x0, y0, x1, y1 = box
    crop = cv2.cvtColor(np.ascontiguousarray(image_rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2BGR)
    local = mask[y0:y1, x0:x1].astype(np.uint8)
    scale = VIEW_HEIGHT / crop.shape[0]
    size = (max(1, round(crop.shape[1] * scale)), VIEW_HEIGHT)
    interpolation = cv2.INTER_NEAREST if scale >= 2 else cv2.INTER_AREA
    panel = cv2.resize(crop, size, interpolation=interpolation)
    if draw and local.any():
        big = cv2.resize(local, size, interpolation=cv2.INTER_NEAREST)
        tinted = panel.copy()
        tinted[big > 0] = OUTLINE_BGR
        panel = cv2.addWeighted(tinted, fill, panel, 1 - fill, 0)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(panel, contours, -1, OUTLINE_BGR, 2, lineType=cv2.LINE_AA)
    return panel


def target_view(triplet: Triplet, pre: np.ndarray, post: np.ndarray, fill: float = FILL_OPACITIES[0]) -> bytes:
    """The view as JPEG bytes (see the module docstring), the mask filled at opacity ``fill`` (0 to 1).

    The outline is drawn on the date(s) where the target is visible: the later image for "appear", the earlier
    for "disappear", both for a change of state.
    """
    mask = triplet.mask.to_array() > 0
    box = crop_box(mask)
    kind = triplet.change_type.value if triplet.change_type else None
    left = _panel(pre, mask, box, kind in ("disappear", "state_change"), fill)
    right = _panel(post, mask, box, kind in ("appear", "state_change"), fill)
    gap = np.full((VIEW_HEIGHT, GAP, 3), 255, np.uint8)
    ok, encoded = cv2.imencode(".jpg", np.hstack([left, gap, right]), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError(f"OpenCV could not encode the target view of triplet {triplet.id}")
    return encoded.tobytes()
