"""From a plan to a scene: render both dates, add the second acquisition's nuisances, read off the truth."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from craft_agent.errors import ExamplesError
from craft_agent.grid import position_of_box
from craft_agent.synthetic.aerial import AerialPlanner
from craft_agent.synthetic.canvas import PAD, Draft, FloatImage, LabelImage, render
from craft_agent.synthetic.primitives import smooth_noise
from craft_agent.synthetic.records import DomainName, SyntheticChange, SyntheticScene
from craft_agent.synthetic.street import StreetPlanner

MIN_SIZE = 128
MAX_SIZE = 4096
# Canvases are drawn PAD px larger on every side, so a shift of up to PAD px never exposes an undrawn border.
_MAX_SHIFT = PAD


def _to_uint8(image: FloatImage) -> NDArray[np.uint8]:
    rounded = image + np.float32(0.5)
    np.clip(rounded, 0, 255, out=rounded)
    return rounded.astype(np.uint8)


def _acquired_later(rng: np.random.Generator, image: FloatImage) -> NDArray[np.uint8]:
    """The post image as another acquisition would give it: other light, colour cast, haze and noise."""
    gamma = float(rng.uniform(0.87, 1.15))
    gain = float(rng.uniform(0.92, 1.08))
    cast = rng.uniform(0.97, 1.03, 3)
    levels = np.arange(256, dtype=np.float64) / 255.0
    curves = np.stack([255.0 * levels**gamma * gain * float(c) for c in cast], axis=1)
    lut = np.clip(curves + 0.5, 0, 255).astype(np.uint8).reshape(1, 256, 3)
    out = cv2.LUT(_to_uint8(image), lut).astype(np.float32)
    h, w = image.shape[:2]
    out *= (1.0 + 0.035 * smooth_noise(rng, h, w, max(h, w) / 2))[..., None]
    sigma = float(rng.uniform(1.5, 3.5))
    out += sigma * rng.standard_normal(out.shape, dtype=np.float32)
    return _to_uint8(out)


def _ground_truth(draft: Draft, pre_labels: LabelImage, post_labels: LabelImage, size: int) -> list[SyntheticChange]:
    index = {id(thing): i for i, thing in enumerate(draft.things)}
    inner = (slice(PAD, PAD + size), slice(PAD, PAD + size))
    claimed = np.zeros((size, size), bool)
    minimum = max(4, int(0.0002 * size * size))
    changes = []
    for plan in draft.changes:
        i = index[id(plan.thing)]
        if plan.change_type == "appear":
            mask = post_labels[inner] == i
        elif plan.change_type == "disappear":
            mask = pre_labels[inner] == i
        else:
            mask = (pre_labels[inner] == i) & (post_labels[inner] == i)
        # Placement keeps changes apart; this guard only protects the "disjoint, non-trivial" contract.
        if mask.sum() < minimum or (mask & claimed).any():
            continue
        claimed |= mask
        ys, xs = np.nonzero(mask)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
        position = position_of_box(x0, y0, x1, y1, size, size)
        changes.append(
            SyntheticChange(
                plan.change_type, plan.category, mask, position, plan.phrase.format(pos=position), plan.attributes
            )
        )
    return changes


def check_size(size: int) -> None:
    """Raise :class:`ExamplesError` unless ``size`` is an integer from MIN_SIZE to MAX_SIZE."""
    if not isinstance(size, int | np.integer) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ExamplesError(
            f"--size must be between {MIN_SIZE} and {MAX_SIZE} px, got {size!r}.",
            hint=f"pass an integer size in [{MIN_SIZE}, {MAX_SIZE}], e.g. 512",
        )


def check_seed(seed: int) -> None:
    """Raise :class:`ExamplesError` unless ``seed`` is a non-negative integer."""
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ExamplesError(f"--seed must be a non-negative integer, got {seed!r}.", hint="pass e.g. --seed 0")


def generate_scene(seed: int, size: int = 512, domain: DomainName = "rs", name: str | None = None) -> SyntheticScene:
    """Generate one synthetic bi-temporal scene with exact change masks.

    The result depends only on (seed, size, domain): all randomness comes from
    ``np.random.default_rng(seed)``. Object sizes scale with ``size``, so a scene keeps its layout
    density at any resolution.

    Args:
        seed: non-negative integer seed.
        size: side of the square images in pixels, 128 to 4096.
        domain: "rs" for an aerial scene, "ns" for a street-level scene.
        name: the scene's name; defaults to "scene_<seed>" (rs) or "street_<seed>" (ns).

    Returns:
        The scene: pre and post uint8 RGB images (post with illumination change, noise and a shift of
        at most 2 px), and 2 to 6 (rs) or 2 to 4 (ns) non-overlapping changes.

    Raises:
        ExamplesError: when seed, size or domain is out of range.
    """
    check_seed(seed)
    check_size(size)
    seed, size = int(seed), int(size)
    if domain not in ("rs", "ns"):
        raise ExamplesError(f"domain must be 'rs' or 'ns', got {domain!r}.", hint="use 'rs' (aerial) or 'ns' (street)")
    rng = np.random.default_rng(seed)
    planner = AerialPlanner(rng, size) if domain == "rs" else StreetPlanner(rng, size)
    draft = planner.plan()
    pre_canvas, pre_labels = render(draft, "pre")
    post_canvas, post_labels = render(draft, "post")
    dx, dy = (int(v) for v in rng.integers(-_MAX_SHIFT, _MAX_SHIFT + 1, 2))
    pre = _to_uint8(pre_canvas[PAD : PAD + size, PAD : PAD + size])
    # Cropping the post canvas at an offset moves its content by (dx, dy) relative to the pre grid.
    shifted = post_canvas[PAD - dy : PAD - dy + size, PAD - dx : PAD - dx + size]
    post = _acquired_later(rng, shifted)
    changes = _ground_truth(draft, pre_labels, post_labels, size)
    default_name = f"scene_{seed}" if domain == "rs" else f"street_{seed}"
    return SyntheticScene(name or default_name, domain, pre, post, changes, (dx, dy))
