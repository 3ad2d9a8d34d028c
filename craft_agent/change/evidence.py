"""Pixel-level change evidence that survives what makes naive differencing fail on real pairs.

- Illumination and season: the later image is radiometrically normalised to the earlier one per Lab
  channel with robust statistics (median and inter-quartile range) taken over the pixels that changed
  least, so a large real change does not drag the normalisation with it.
- Colour versus structure: a colour term (distance in CIE Lab, lightness and chroma weighted
  separately) plus a structural term (1 - the contrast-structure part of SSIM on lightness), which
  ignores a uniform brightening but sees edges and textures appear or vanish.
- Small misregistration: each pixel is compared with the best-matching pixel within ``shift_radius`` in
  the other date, both ways, so a one- or two-pixel shift does not light up every edge.
- Noise: light Gaussian smoothing before and after; morphology comes with binarisation.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class EvidenceConfig(BaseModel):
    """Parameters of the pixel evidence (see :func:`change_evidence`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    presmooth_sigma: float = Field(default=1.0, ge=0, description="Gaussian blur before comparing (px).")
    lightness_weight: float = Field(default=1.0, ge=0, description="Weight of Lab L in the colour distance.")
    chroma_weight: float = Field(default=1.0, ge=0, description="Weight of Lab a, b in the colour distance.")
    shift_radius: int = Field(default=1, ge=0, le=4, description="Misregistration tolerance (px).")
    colour_scale: float = Field(default=25.0, gt=0, description="Lab distance that counts as a full change.")
    structure_weight: float = Field(default=0.3, ge=0, description="Weight of the structural term.")
    structure_sigma: float = Field(default=2.0, gt=0, description="Window of the structural term (px).")
    normalise: bool = Field(default=True, description="Radiometric normalisation of the later image.")
    postsmooth_sigma: float = Field(default=2.0, ge=0, description="Gaussian blur of the evidence map (px).")


def to_lab(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) to float32 CIE Lab (L in 0..100)."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def radiometric_normalise(reference: np.ndarray, moving: np.ndarray, keep_fraction: float = 0.5) -> np.ndarray:
    """Map ``moving``'s Lab channels onto ``reference``'s, using the least-changed pixels.

    Per channel, a gain (ratio of inter-quartile ranges, clamped to 0.5..2) and an offset (medians)
    are estimated over the ``keep_fraction`` of pixels whose raw Lab distance is smallest; these are
    most likely unchanged ground, so real changes do not bias the correction.
    """
    distance = np.sqrt(((reference - moving) ** 2).sum(axis=-1))
    keep = distance <= np.percentile(distance, keep_fraction * 100)
    normalised = moving.copy()
    for channel in range(reference.shape[-1]):
        ref = reference[..., channel][keep]
        mov = moving[..., channel][keep]
        ref_q = np.percentile(ref, [25, 50, 75])
        mov_q = np.percentile(mov, [25, 50, 75])
        gain = float(np.clip((ref_q[2] - ref_q[0]) / max(mov_q[2] - mov_q[0], 1e-3), 0.5, 2.0))
        normalised[..., channel] = (moving[..., channel] - mov_q[1]) * gain + ref_q[1]
    return normalised


def shift_tolerant_distance(a: np.ndarray, b: np.ndarray, radius: int) -> np.ndarray:
    """Per pixel, the smallest Euclidean distance between ``b`` and ``a`` shifted by up to ``radius``
    pixels, taken both ways (a against shifted b, b against shifted a) and combined with max, so a
    change is seen from either date while a small misregistration is forgiven."""

    def one_way(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
        height, width = fixed.shape[:2]
        padded = cv2.copyMakeBorder(moving, radius, radius, radius, radius, cv2.BORDER_REFLECT)
        best = np.full((height, width), np.inf, dtype=np.float32)
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                window = padded[radius + dy : radius + dy + height, radius + dx : radius + dx + width]
                np.minimum(best, np.sqrt(((window - fixed) ** 2).sum(axis=-1)), out=best)
        return best

    return np.maximum(one_way(a, b), one_way(b, a))


def structure_dissimilarity(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    """1 - the contrast-structure term of SSIM between two single-channel images (0 same, up to 2)."""
    c2 = (0.03 * 100.0) ** 2  # SSIM's constant for a dynamic range of 100 (Lab lightness)
    mean_a = cv2.GaussianBlur(a, (0, 0), sigma)
    mean_b = cv2.GaussianBlur(b, (0, 0), sigma)
    var_a = cv2.GaussianBlur(a * a, (0, 0), sigma) - mean_a * mean_a
    var_b = cv2.GaussianBlur(b * b, (0, 0), sigma) - mean_b * mean_b
    cov = cv2.GaussianBlur(a * b, (0, 0), sigma) - mean_a * mean_b
    return np.asarray(1.0 - (2 * cov + c2) / (np.maximum(var_a, 0) + np.maximum(var_b, 0) + c2), dtype=np.float32)


def change_evidence(pre: np.ndarray, post: np.ndarray, config: EvidenceConfig) -> np.ndarray:
    """Change evidence per pixel for two co-registered RGB uint8 images.

    Returns:
        float32 (H, W), about 0 for no change and about 1 or more for a clear change (not clipped, so
        strong changes stay distinguishable from moderate ones).

    Raises:
        ValueError: when the images differ in shape.
    """
    if pre.shape != post.shape:
        raise ValueError(f"pre {pre.shape} and post {post.shape} must have the same shape")
    if config.presmooth_sigma > 0:
        pre = cv2.GaussianBlur(pre, (0, 0), config.presmooth_sigma)
        post = cv2.GaussianBlur(post, (0, 0), config.presmooth_sigma)
    lab_pre, lab_post = to_lab(pre), to_lab(post)
    if config.normalise:
        lab_post = radiometric_normalise(lab_pre, lab_post)
    weights = np.array([config.lightness_weight, config.chroma_weight, config.chroma_weight], dtype=np.float32)
    colour = shift_tolerant_distance(lab_pre * weights, lab_post * weights, config.shift_radius)
    evidence = colour / config.colour_scale
    if config.structure_weight > 0:
        structure = structure_dissimilarity(lab_pre[..., 0], lab_post[..., 0], config.structure_sigma)
        evidence = evidence + config.structure_weight * structure
    if config.postsmooth_sigma > 0:
        return np.asarray(cv2.GaussianBlur(evidence, (0, 0), config.postsmooth_sigma), dtype=np.float32)
    return np.asarray(evidence, dtype=np.float32)
