"""The offline mask engine: GrabCut seeded by the change map and the box, on the right date.

GrabCut fits colour models to the target and its surroundings and cuts along image edges, so the mask
follows the object's outline on the image where it is visible rather than the blurrier change map.
The seed region is trusted where it is deep inside (definite foreground), the rest of the box is
"probably background", and a margin around the box is definite background. When the cut drifts far from
the seed (low agreement) the cleaned seed is kept instead and the low stability is recorded.
"""

from __future__ import annotations

import cv2
import numpy as np

from craft_agent.masks.base import MaskRequest, MaskResult, agreement, clean_mask, combine_dates


class ClassicalMaskEngine:
    """GrabCut refinement of detector regions; deterministic and weight-free.

    Args:
        margin: context around the box given to GrabCut (px and share of the box size, the larger).
        iterations: GrabCut iterations.
        min_area: components smaller than this are removed from the result (px).
        max_hole: holes up to this size are filled (px).
        min_agreement: below this IoU with the seed the seed is kept instead.
        min_refine_area: seeds smaller than this are too small for colour models and are kept as they are.
        max_cut_side: crops larger than this (px, longer side) are cut at reduced resolution.
    """

    name = "classical"

    def __init__(
        self,
        margin: int = 8,
        iterations: int = 2,
        min_area: int = 12,
        max_hole: int = 64,
        min_agreement: float = 0.3,
        min_refine_area: int = 64,
        max_cut_side: int = 160,
    ) -> None:
        self.margin = margin
        self.iterations = iterations
        self.min_area = min_area
        self.max_hole = max_hole
        self.min_agreement = min_agreement
        self.min_refine_area = min_refine_area
        self.max_cut_side = max_cut_side

    def segment(self, request: MaskRequest) -> MaskResult:
        """Segment the request's target on the date(s) where it is visible.

        Returns:
            The mask with scores: ``agreement`` (IoU with the seed in the box) and ``stability``
            (IoU between the cut and the seed it started from; 1.0 when the seed was kept as is).
        """
        height, width = request.pre.shape[:2]
        seed = request.seed if request.seed is not None else _box_mask(request, height, width)
        masks, stabilities = [], []
        for date in request.dates:
            cut, stability = self._cut(request.image(date), seed, request)
            masks.append(cut)
            stabilities.append(stability)
        mask = clean_mask(combine_dates(masks), self.min_area, self.max_hole)
        if not mask.any():
            mask = clean_mask(seed, 1, self.max_hole)
        return MaskResult(
            mask=mask,
            engine=self.name,
            dates=request.dates,
            scores={
                "agreement": round(agreement(mask, request.seed, request.box), 4),
                "stability": round(float(min(stabilities)), 4),
            },
        )

    def _cut(self, image: np.ndarray, seed: np.ndarray, request: MaskRequest) -> tuple[np.ndarray, float]:
        if request.seed_follows_edges or int(seed.sum()) < self.min_refine_area:
            return seed.copy(), 1.0
        height, width = image.shape[:2]
        box = request.box
        margin = max(self.margin, int(0.25 * max(box.width, box.height)))
        x0, y0 = max(0, box.x0 - margin), max(0, box.y0 - margin)
        x1, y1 = min(width, box.x1 + margin), min(height, box.y1 + margin)
        crop_seed = seed[y0:y1, x0:x1]
        labels = np.full(crop_seed.shape, cv2.GC_BGD, dtype=np.uint8)
        labels[box.y0 - y0 : box.y1 - y0, box.x0 - x0 : box.x1 - x0] = cv2.GC_PR_BGD
        labels[crop_seed] = cv2.GC_PR_FGD
        core = cv2.erode(crop_seed.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        labels[core] = cv2.GC_FGD
        if (labels == cv2.GC_BGD).sum() == 0 or not (labels != cv2.GC_BGD).any():
            return seed.copy(), 1.0
        background = np.zeros((1, 65), np.float64)
        foreground = np.zeros((1, 65), np.float64)
        crop = np.ascontiguousarray(cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2BGR))
        # GrabCut's cost grows with the crop; large targets are cut at reduced size (their outline loses
        # at most a few pixels, small against their size) so one pair stays within seconds.
        scale = min(1.0, self.max_cut_side / max(crop.shape[:2]))
        if scale < 1.0:
            size = (max(8, round(crop.shape[1] * scale)), max(8, round(crop.shape[0] * scale)))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            small = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        else:
            small = labels
        small = np.ascontiguousarray(small, dtype=np.uint8)
        try:
            cv2.grabCut(crop, small, None, background, foreground, self.iterations, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
        except cv2.error:
            # GrabCut refuses degenerate colour statistics (e.g. a flat crop): keep the seed.
            return seed.copy(), 1.0
        foreground_labels = ((small == cv2.GC_FGD) | (small == cv2.GC_PR_FGD)).astype(np.uint8)
        if scale < 1.0:
            foreground_labels = cv2.resize(foreground_labels, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        cut = np.zeros_like(seed)
        cut[y0:y1, x0:x1] = foreground_labels.astype(bool)
        union = int(np.logical_or(cut, seed).sum())
        stability = float(np.logical_and(cut, seed).sum()) / union if union else 0.0
        if stability < self.min_agreement:
            return seed.copy(), stability
        return cut, stability


def _box_mask(request: MaskRequest, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    box = request.box
    mask[box.y0 : box.y1, box.x0 : box.x1] = True
    return mask
