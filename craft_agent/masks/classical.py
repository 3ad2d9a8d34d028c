"""The offline mask engine: GrabCut seeded by the change map and the box, on the right date.

GrabCut fits colour models to the target and its surroundings and cuts along image edges, so the mask
follows the object's outline on the image where it is visible rather than the blurrier change map.
The seed region is trusted where it is deep inside (definite foreground), the rest of the box is
"probably background", and a margin around the box is definite background. When the cut drifts far from
the seed (low agreement) the cleaned seed is kept instead and the low stability is recorded. Everything
happens in a window around the target, so hundreds of small targets in a large scene stay cheap.
"""

from __future__ import annotations

import cv2
import numpy as np

from craft_agent.masks.base import (
    MaskRequest,
    MaskResult,
    MaskScore,
    Window,
    agreement,
    clean_mask,
    combine_dates,
    mask_iou,
)
from craft_agent.models import BBox


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
            The mask with scores (:class:`~craft_agent.masks.base.MaskScore`): ``mask_agreement`` (IoU with the
            seed in the box) and ``mask_stability`` (IoU between the cut and the seed it started from; 1.0 when the
            seed was kept as is).
        """
        height, width = request.pre.shape[:2]
        box = request.box
        window = Window.around(box, max(self.margin, int(0.25 * max(box.width, box.height))), width, height)
        local = window.local_box(box)
        if request.seed is not None:
            seed = request.seed[window.slices]
        else:
            seed = np.zeros((window.y1 - window.y0, window.x1 - window.x0), dtype=bool)
            seed[local.y0 : local.y1, local.x0 : local.x1] = True
        masks, stabilities = [], []
        for date in request.dates:
            cut, stability = self._cut(request.image(date)[window.slices], seed, local, request.seed_follows_edges)
            masks.append(cut)
            stabilities.append(stability)
        crop = clean_mask(combine_dates(masks), self.min_area, self.max_hole)
        if not crop.any():
            crop = clean_mask(seed, 1, self.max_hole)
        return MaskResult(
            mask=window.to_rle(crop, height, width),
            engine=self.name,
            dates=request.dates,
            scores={
                MaskScore.AGREEMENT: round(agreement(crop, seed if request.seed is not None else None, local), 4),
                MaskScore.STABILITY: round(float(min(stabilities)), 4),
            },
        )

    def _cut(self, crop: np.ndarray, seed: np.ndarray, box: BBox, seed_follows_edges: bool) -> tuple[np.ndarray, float]:
        if seed_follows_edges or int(seed.sum()) < self.min_refine_area:
            return seed.copy(), 1.0
        labels = np.full(seed.shape, cv2.GC_BGD, dtype=np.uint8)
        labels[box.y0 : box.y1, box.x0 : box.x1] = cv2.GC_PR_BGD
        labels[seed] = cv2.GC_PR_FGD
        core = cv2.erode(seed.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        labels[core] = cv2.GC_FGD
        if not (labels == cv2.GC_BGD).any():
            return seed.copy(), 1.0
        image = np.ascontiguousarray(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        # GrabCut's cost grows with the crop; large targets are cut at reduced size (their outline loses
        # at most a few pixels, small against their size) so one pair stays within seconds.
        scale = min(1.0, self.max_cut_side / max(image.shape[:2]))
        if scale < 1.0:
            size = (max(8, round(image.shape[1] * scale)), max(8, round(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            labels = np.asarray(cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST), dtype=np.uint8)
        labels = np.ascontiguousarray(labels, dtype=np.uint8)
        background = np.zeros((1, 65), np.float64)
        foreground = np.zeros((1, 65), np.float64)
        # GrabCut seeds its colour models with k-means on OpenCV's global random generator, whose state
        # depends on every earlier call in the process: reseed so a mask depends only on its inputs
        # (a resumed run must reproduce the same masks, hence the same triplet ids).
        cv2.setRNGSeed(0)
        try:
            cv2.grabCut(image, labels, None, background, foreground, self.iterations, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
        except cv2.error:
            # GrabCut refuses degenerate colour statistics (e.g. a flat crop): keep the seed.
            return seed.copy(), 1.0
        cut = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
        if scale < 1.0:
            result = cv2.resize(cut, (seed.shape[1], seed.shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
        else:
            result = cut.astype(bool)
        stability = mask_iou(result, seed)
        if stability < self.min_agreement:
            return seed.copy(), stability
        return result, stability
