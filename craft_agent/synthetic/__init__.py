"""Seeded synthetic bi-temporal scenes with exact change ground truth.

The generator draws pairs of images of one made-up place at two times, lists what changed between them
(appear / disappear / state_change, with a category, an exact mask, a grid position and a CRAFT
stage-1 style phrase) and writes them as an examples folder. The demo, the tests and the benchmarks use it
so that the pipeline can be scored against a ground truth that is right by construction.

What it models:

* Aerial ("rs") scenes seen from above: textured ground (grass, dry grass and soil patches with
  low-frequency variation and fine grain), roads with kerbs and dashed lane markings (sometimes a
  crossing), parking lots, buildings (rectangular or L-shaped footprints, pitched or flat roofs in several
  colours, a darker edge and a cast shadow away from one sun shared by the whole scene), clusters of round
  tree canopies with shadows, a pond, and vehicles on roads and in parking stalls.
* Street ("ns") scenes seen from the ground: a sky gradient with soft clouds, facades with windows and a
  door, a paved pavement and a road band, cars in side view, statues, signs, benches, planters, lamps.
* Changes that do not overlap each other: new buildings on cleared lots, demolitions leaving rubble, trees
  cleared to soil, repainted roofs, lawns paved or dug up, vehicles coming and going, a pond drying up, a
  resurfaced road (rs); cars parked or gone, objects placed or removed, a tarp taken off an entrance, a
  facade or door repainted, a planter's grass turning lush (ns).
* Acquisition nuisances on the post image only, inside and outside changes alike: a global gain, gamma and
  colour cast, a faint low-frequency illumination field, sensor noise, and an integer misregistration of at
  most 2 px (recorded in ``SyntheticScene.shift``).

What it does not model: perspective or relief displacement, seasons, moving shadows (the sun is the same at
both dates), clouds over aerial scenes, sensor artefacts beyond Gaussian noise, or objects partly
occluding changes in aerial scenes. Shadows of objects that appear or disappear change the pixels next to
the object; they are real differences but are not part of any change mask, as in hand-labelled data.

Ground truth is exact: every thing is painted through layers that also write an owner label, so a change's
mask is the set of pixels its object owns in the post scene (appear), in the pre scene (disappear), or in
both (state_change: the surface whose appearance changed). Masks are in the pre image's pixel grid.

Modules, from the public surface down:

* :mod:`~craft_agent.synthetic.examples`: :func:`write_examples`, the examples folder and its manifest.
* :mod:`~craft_agent.synthetic.scene`: :func:`generate_scene`: render both dates, add the nuisances, read
  off the ground truth.
* :mod:`~craft_agent.synthetic.records`: :class:`SyntheticScene`, :class:`SyntheticChange` and
  :class:`ExamplesSummary`.
* :mod:`~craft_agent.synthetic.aerial` and :mod:`~craft_agent.synthetic.street`: the planners that decide
  where things go and which of them change; ``aerial_objects`` and ``street_objects`` draw the things.
* :mod:`~craft_agent.synthetic.canvas` (layers, things, rendering with owner labels),
  :mod:`~craft_agent.synthetic.primitives` (masks, textures) and :mod:`~craft_agent.synthetic.palettes`.
"""

from craft_agent.models import CATEGORIES
from craft_agent.synthetic.examples import write_examples
from craft_agent.synthetic.records import (
    CHANGE_TYPES,
    ChangeTypeName,
    DomainName,
    ExamplesSummary,
    SyntheticChange,
    SyntheticScene,
)
from craft_agent.synthetic.scene import MAX_SIZE, MIN_SIZE, generate_scene

__all__ = [
    "CATEGORIES",
    "CHANGE_TYPES",
    "MAX_SIZE",
    "MIN_SIZE",
    "ChangeTypeName",
    "DomainName",
    "ExamplesSummary",
    "SyntheticChange",
    "SyntheticScene",
    "generate_scene",
    "write_examples",
]
