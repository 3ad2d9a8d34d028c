"""From a changed-pixel mask to separate objects (instances).

A change label or a detector's map paints a row of new houses as one blob when the houses touch. Splitting
it by shape alone is principled and scale-free: two objects joined by a narrow neck show two peaks in the
distance transform (the radius of the largest disc that fits) with a low saddle between them, while one
object of any shape shows one plateau. So:

1. 8-connected components of the mask;
2. inside each, a watershed of the distance transform from its local maxima;
3. neighbouring pieces are merged back unless the neck between them is clearly narrower than both of
   them: the saddle (the widest point of their shared border) must be at most :data:`NECK_RATIO` of the
   smaller piece's peak radius;
4. pieces smaller than the minimum area are merged into the neighbour they touch most (never dropped,
   so the union of the objects is the mask minus the specks), and components below it are dropped.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from craft_agent.change.objects import Region

NECK_RATIO = 0.6
"""A border between two pieces is a neck (the pieces stay apart) when its widest point is at most this share
of the smaller piece's largest inscribed radius."""


def split_instances(
    mask: np.ndarray,
    min_area_px: int,
    evidence: np.ndarray | None = None,
    source: str = "instance",
    neck_ratio: float = NECK_RATIO,
) -> list[Region]:
    """Separate objects of a binary change mask.

    Args:
        mask: bool (H, W) changed pixels.
        min_area_px: components below this are specks and dropped; pieces below it are merged into a
            neighbour.
        evidence: optional float (H, W) map whose mean inside each object becomes its ``evidence``
            (1.0 for every object when absent, e.g. for labels).
        source: the ``source`` written on each region.
        neck_ratio: see :data:`NECK_RATIO`.

    Returns:
        The objects as :class:`Region` crops, in reading order of their top-left corner.
    """
    mask = np.asarray(mask, dtype=bool)
    _, components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    regions: list[Region] = []
    for index, window in enumerate(ndimage.find_objects(components), start=1):
        if window is None:
            continue
        # one pixel of margin so the distance transform sees the component's border on every side
        y0, x0 = max(0, window[0].start - 1), max(0, window[1].start - 1)
        y1, x1 = min(mask.shape[0], window[0].stop + 1), min(mask.shape[1], window[1].stop + 1)
        component = components[y0:y1, x0:x1] == index
        if int(component.sum()) < min_area_px:
            continue
        for piece in _split_component(component, min_area_px, neck_ratio):
            ys, xs = np.nonzero(piece)
            py0, px0 = int(ys.min()), int(xs.min())
            crop = piece[py0 : int(ys.max()) + 1, px0 : int(xs.max()) + 1]
            gy0, gx0 = y0 + py0, x0 + px0
            value = 1.0
            if evidence is not None:
                value = float(evidence[gy0 : gy0 + crop.shape[0], gx0 : gx0 + crop.shape[1]][crop].mean())
            regions.append(Region(crop=crop, x0=gx0, y0=gy0, source=source, evidence=value))
    return sorted(regions, key=lambda r: (r.y0, r.x0))


def _split_component(component: np.ndarray, min_area_px: int, neck_ratio: float) -> list[np.ndarray]:
    """The pieces of one connected component (bool crops of the component's own shape)."""
    distance = ndimage.distance_transform_edt(component)
    peak_radius = float(distance.max())
    # Objects narrower than this cannot be told apart by shape: keep the component whole.
    if peak_radius < 3.0:
        return [component]
    min_distance = max(2, int(np.sqrt(min_area_px / np.pi)))
    peaks = peak_local_max(distance, min_distance=min_distance, threshold_abs=2.0, labels=component.astype(np.int32))
    if len(peaks) < 2:
        return [component]
    markers = np.zeros(component.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # 8-connected like the component: with the default 4-connectivity a pixel joined to the rest only by a
    # corner is never reached and would be lost
    labels = watershed(-distance, markers, mask=component, connectivity=2)
    labels = _merge_shallow_necks(labels, distance, neck_ratio)
    labels = _merge_small_pieces(labels, min_area_px)
    return [labels == value for value in np.unique(labels) if value > 0]


def _borders(labels: np.ndarray, distance: np.ndarray) -> dict[tuple[int, int], tuple[float, int]]:
    """For each pair of touching labels (8-neighbourhood): (highest distance on their shared border, border
    length in pixel contacts)."""
    height, width = labels.shape
    padded_labels = np.pad(labels, 1)
    padded_distance = np.pad(distance, 1)
    keys: list[np.ndarray] = []
    heights: list[np.ndarray] = []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        b = padded_labels[1 + dy : height + 1 + dy, 1 + dx : width + 1 + dx]
        db = padded_distance[1 + dy : height + 1 + dy, 1 + dx : width + 1 + dx]
        touching = (labels > 0) & (b > 0) & (labels != b)
        low = np.minimum(labels[touching], b[touching]).astype(np.int64)
        high = np.maximum(labels[touching], b[touching]).astype(np.int64)
        keys.append(low * (int(labels.max()) + 1) + high)
        heights.append(np.minimum(distance[touching], db[touching]))
    if not keys or not sum(k.size for k in keys):
        return {}
    all_keys, all_heights = np.concatenate(keys), np.concatenate(heights)
    unique, inverse = np.unique(all_keys, return_inverse=True)
    saddle = np.zeros(len(unique), dtype=np.float64)
    np.maximum.at(saddle, inverse, all_heights)
    length = np.bincount(inverse, minlength=len(unique))
    base = int(labels.max()) + 1
    return {(int(k // base), int(k % base)): (float(s), int(n)) for k, s, n in zip(unique, saddle, length, strict=True)}


def _merge_shallow_necks(labels: np.ndarray, distance: np.ndarray, neck_ratio: float) -> np.ndarray:
    """Merge neighbouring pieces whose shared border is not clearly narrower than both pieces."""
    labels = labels.copy()
    while True:
        peaks = {int(v): float(distance[labels == v].max()) for v in np.unique(labels) if v > 0}
        merge = None
        for (a, b), (saddle, _) in sorted(_borders(labels, distance).items(), key=lambda kv: -kv[1][0]):
            if saddle > neck_ratio * min(peaks[a], peaks[b]):
                merge = (a, b)
                break
        if merge is None:
            return labels
        labels[labels == merge[1]] = merge[0]


def _merge_small_pieces(labels: np.ndarray, min_area_px: int) -> np.ndarray:
    """Merge pieces below ``min_area_px`` into the neighbour they share the longest border with."""
    labels = labels.copy()
    while True:
        values, sizes = np.unique(labels[labels > 0], return_counts=True)
        if len(values) < 2 or sizes.min() >= min_area_px:
            return labels
        small = int(values[int(np.argmin(sizes))])
        borders = _borders(labels, np.ones(labels.shape, dtype=np.float32))
        touching = {(b if a == small else a): length for (a, b), (_, length) in borders.items() if small in (a, b)}
        if not touching:
            return labels  # an isolated small piece cannot happen inside one component; kept as it is
        labels[labels == small] = max(touching, key=lambda k: (touching[k], -k))
