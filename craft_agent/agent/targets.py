"""Pure functions over the agent's targets: which to keep and how each is told apart. The nodes in
:mod:`craft_agent.agent.nodes` call these; nothing here talks to the language model, the catalog or the images.
The extra targets a pair gets (groups, no-target changes) are composed in :mod:`craft_agent.agent.compose`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from craft_agent.agent.cues import PALETTE, labelled_change_type, landmark_phrase, mask_window
from craft_agent.agent.offline import confirmed_change
from craft_agent.agent.schemas import ChangeCue
from craft_agent.agent.state import Rejection, Target
from craft_agent.agent.wording import (
    EXTREME_WORDS,
    MAX_ORDINAL,
    ORDINAL_WORDS,
    SHAPE_ADJECTIVES,
    SIDE_NAMES,
    SIZE_ADJECTIVES,
    ordinal_expression,
)
from craft_agent.models import BBox, ChangeType, Domain, RLEMask


def keep_labelled(cues: list[ChangeCue], targets: list[Target], rejected: list[Rejection], domain: Domain) -> None:
    """Labelled changes are real whatever the review said: one the model rejected or skipped is confirmed by
    the rules, and the type and category the labels give overrule the model's."""
    by_candidate = {t.candidate_id: t for t in targets if t.candidate_id}
    for cue in cues:
        if not cue.labelled:
            continue
        rejected[:] = [r for r in rejected if r.candidate_id != cue.candidate_id]
        target = by_candidate.get(cue.candidate_id)
        if target is None:
            change = confirmed_change(cue, domain)
            target = Target(
                id=cue.candidate_id,
                candidate_id=cue.candidate_id,
                change_type=change.change_type or cue.detector_type,
                category=change.category,
                description=change.description or "the change",
                box=cue.box,
                cue=cue,
            )
            targets.append(target)
        target.box = cue.box
        target.change_type = labelled_change_type(cue, target.change_type)
        target.category = cue.label_category or target.category


SAME_OBJECT_SHARE = 0.5
"""Two targets of one change type whose outlines (convex hulls) share at least this share of the smaller one are
one object."""


def _evidence_order(target: Target) -> tuple[bool, int, str]:
    """Strongest first: accepted before uncorrected, then by the detector's evidence rank."""
    return (target.status != "accepted", target.cue.rank, target.id)


def _outline(mask: RLEMask) -> tuple[np.ndarray, BBox] | None:
    """The mask's convex hull filled, cropped to its box, and the box (None: empty mask)."""
    box = mask.bbox()
    if box is None:
        return None
    x0, y0, x1, y1 = box.as_xyxy()
    crop = mask_window(mask, x0, y0, x1, y1).astype(np.uint8)
    hull = np.zeros_like(crop)
    cv2.fillConvexPoly(hull, cv2.convexHull(cv2.findNonZero(crop)), 1)
    return hull.astype(bool), box


def _shared_outline(a: tuple[np.ndarray, BBox], b: tuple[np.ndarray, BBox]) -> float:
    """Pixels the two outlines share, as a share of the smaller outline."""
    (hull_a, box_a), (hull_b, box_b) = a, b
    ax0, ay0, ax1, ay1 = box_a.as_xyxy()
    bx0, by0, bx1, by1 = box_b.as_xyxy()
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    if x0 >= x1 or y0 >= y1:
        return 0.0
    shared = np.logical_and(
        hull_a[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0], hull_b[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
    ).sum()
    return float(shared) / max(1, min(int(hull_a.sum()), int(hull_b.sum())))


def drop_duplicates(targets: list[Target]) -> list[Target]:
    """Discard a kept target whose outline mostly lies within a stronger one's of the same change type
    (:data:`SAME_OBJECT_SHARE` of the smaller convex hull): one object found twice, e.g. a car found as two
    pieces (its changed region and a segment of the date that holds it, typed apart as a car and a roof), or a
    change the model added where the detector had one. Two triplets would send the auditor the same object under
    two names. Hulls, not pixels: two pieces of one object share its outline but few pixels, while two objects
    side by side share neither. Labelled changes are distinct objects and stay; different types at one place
    (a car gone, another parked there) are two changes and stay."""
    held: list[tuple[Target, tuple[np.ndarray, BBox]]] = []
    for target in sorted((t for t in targets if t.kept and not t.member_ids), key=_evidence_order):
        outline = _outline(target.mask) if target.mask is not None else None
        if outline is None:
            continue
        index = None
        if not target.cue.labelled:
            index = next(
                (
                    i
                    for i, (other, other_outline) in enumerate(held)
                    if other.change_type == target.change_type
                    and _shared_outline(outline, other_outline) >= SAME_OBJECT_SHARE
                ),
                None,
            )
        if index is None:
            held.append((target, outline))
            continue
        same = held[index][0]
        target.status, target.duplicate_of = "discarded", same.id
        if same.mask is not None and target.mask is not None:
            # the object is both pieces: its box (position words) and outline (the next piece) grow with it
            same.mask = RLEMask.union([same.mask, target.mask])
            same.box = BBox.enclosing([same.box, target.box])
            grown = _outline(same.mask)
            if grown is not None:
                held[index] = (same, grown)
    return targets


def keep_within_budget(targets: list[Target], budget: int | None) -> list[Target]:
    """Discard kept targets beyond ``budget`` (None: no limit), the weakest evidence first: accepted before
    uncorrected, then by the detector's evidence rank (:func:`~craft_agent.change.stage.evidence_rank`)."""
    kept = [t for t in targets if t.kept]
    if budget is None or len(kept) <= budget:
        return targets
    ranked = sorted(kept, key=_evidence_order)
    for target in ranked[budget:]:
        target.leave_out("budget")
    return targets


def visible(targets: list[Target], unreviewed: list[Target]) -> list[Target]:
    """The kept targets, and the other changes a reader of the pair sees: those accepted but left out for the
    budget or for want of an expression that singles them out, and those the review never reached
    (:attr:`~craft_agent.agent.state.AgentState.unreviewed`)."""
    return [*(t for t in targets if t.kept or t.over_budget or t.unnamed), *unreviewed]


# ---------------------------------------------------------------------------------------------------------
# The referring rule: an expression is read as a reader would, against the pair's other targets
# ---------------------------------------------------------------------------------------------------------
#
# A reader takes the targets of the same change type and category, keeps those the expression's attributes
# fit (colour, size, shape, a landmark phrase), then applies its position and comparison words among them
# ("westernmost", "the second ... from the north", "largest"). An expression refers when exactly its target
# is left; it lies when its target does not answer to it. Both are checked here, so no expression says
# "the southernmost house" of a house with another one south of it.

_COLOURS = sorted(PALETTE, key=len, reverse=True)  # "dark grey" before "grey"
_SIZES = sorted({w for w in SIZE_ADJECTIVES.values() if w} | {w for w in SHAPE_ADJECTIVES.values() if w}, key=len)
_COMPARATIVES = {
    "largest": 1,
    "larger": 1,
    "biggest": 1,
    "bigger": 1,
    "smallest": -1,
    "smaller": -1,
}


def _plain(text: str) -> str:
    return " " + re.sub(r"[\s-]+", " ", text.lower()).strip() + " "


def _says(text: str, phrase: str) -> bool:
    return f" {_plain(phrase).strip()} " in text


def _consume(text: str, phrase: str) -> str:
    return text.replace(f" {_plain(phrase).strip()} ", " # ")


def _attributes(cue: ChangeCue) -> tuple[set[str], set[str], tuple[str, ...]]:
    """Colours (both dates), size and shape words, and neighbour phrases a cue answers to."""
    size = {SIZE_ADJECTIVES.get(cue.size, ""), SHAPE_ADJECTIVES.get(cue.shape, "")} - {""}
    return {cue.colour_before, cue.colour_after}, size, tuple(cue.neighbours)


@dataclass(frozen=True)
class _Reading:
    """What an expression says about its target: attribute words, and position or comparison claims."""

    colours: tuple[str, ...]
    sizes: tuple[str, ...]
    neighbours: tuple[str, ...]
    extremes: tuple[str, ...]
    ordinals: tuple[tuple[int, str], ...]
    comparatives: tuple[int, ...]
    true_of_target: bool
    line: tuple[str, int, str] | None = None
    """("row" or "column", its 0-based rank, the side counted from) when the expression says "in the
    northernmost row" or "in the second column from the west"."""
    edge: str | None = None
    """The side of the image whose edge the expression places its target at ("at the eastern edge of the
    image")."""


def _read(expression: str, target: Target, domain: Domain) -> _Reading:
    colours, sizes, neighbours = _attributes(target.cue)
    text = _plain(expression)
    line, text = _read_line(text, domain)
    edge, text = _read_edge(text, domain)
    said_neighbours = tuple(n for n in neighbours if _says(text, n))
    for phrase in said_neighbours:  # a landmark's colour is the landmark's, not the target's
        text = _consume(text, phrase)
    said_colours = []
    for colour in _COLOURS:
        if _says(text, colour):
            said_colours.append(colour)
            text = _consume(text, colour)
    said_sizes = [word for word in _SIZES if _says(text, word)]
    sides = {word: side for side, word in EXTREME_WORDS[domain].items()}
    extremes = tuple(sides[word] for word in sides if _says(text, word))
    names = {name: side for side, name in SIDE_NAMES[domain].items()}
    ordinals = tuple(
        (ORDINAL_WORDS.index(word), names[side])
        for word, side in re.findall(r" (" + "|".join(ORDINAL_WORDS[1:]) + r") .*?from the (\w+) ", text)
        if side in names
    )
    comparatives = tuple(sign for word, sign in _COMPARATIVES.items() if _says(text, word))
    # a colour, size or shape the target does not have makes the expression untrue of it
    true_of_target = set(said_colours) <= colours and set(said_sizes) <= sizes
    return _Reading(
        tuple(said_colours),
        tuple(said_sizes),
        said_neighbours,
        extremes,
        ordinals,
        comparatives,
        true_of_target,
        line,
        edge,
    )


EDGE_WORDS: dict[Domain, dict[str, str]] = {
    Domain.RS: {"west": "western", "east": "eastern", "north": "northern", "south": "southern"},
    Domain.NS: {"west": "left", "east": "right", "north": "top", "south": "bottom"},
}
"""How the image's edges are said: "at the eastern edge of the image", "at the left edge of the image"."""


def _edge_phrase(side: str, domain: Domain) -> str:
    return f"at the {EDGE_WORDS[domain][side]} edge of the image"


_EDGE_PHRASE = r"at the ({word}) edge of the image"
"""How an expression places its target at an image edge (``{word}``: the pattern of the edge's word)."""
_LINE_PHRASE = r"in the ({word}) (row|column)(?: from the ({side}))?"
"""How an expression places its target in a row or column (``{word}``: an extreme or ordinal word's pattern,
``{side}``: a side's)."""


def _read_edge(text: str, domain: Domain) -> tuple[str | None, str]:
    """The image edge an expression places its target at, and the text without that phrase."""
    words = {word: side for side, word in EDGE_WORDS[domain].items()}
    match = re.search(" " + _EDGE_PHRASE.format(word=r"\w+") + " ", text)
    if match is None or match.group(1) not in words:
        return None, text
    return words[match.group(1)], text[: match.start()] + " " + text[match.end() :]


def _edges(target: Target, image: tuple[int, int] | None) -> set[str]:
    """The sides of the image whose edge the target's box touches (east and south only with the image's size)."""
    box = target.box
    touched = {side for side, hit in (("west", box.x0 <= 0), ("north", box.y0 <= 0)) if hit}
    if image is not None:
        touched |= {side for side, hit in (("east", box.x1 >= image[0]), ("south", box.y1 >= image[1])) if hit}
    return touched


def _line_phrase(kind: str, rank: int, side: str, domain: Domain) -> str:
    if rank == 0:
        return f"in the {EXTREME_WORDS[domain][side]} {kind}"
    return f"in the {ORDINAL_WORDS[rank]} {kind} from the {SIDE_NAMES[domain][side]}"


def _read_line(text: str, domain: Domain) -> tuple[tuple[str, int, str] | None, str]:
    """The row or column an expression places its target in, and the text without that phrase."""
    extremes = {word: side for side, word in EXTREME_WORDS[domain].items()}
    names = {name: side for side, name in SIDE_NAMES[domain].items()}
    match = re.search(" " + _LINE_PHRASE.format(word=r"\w+", side=r"\w+") + " ", text)
    if match is None:
        return None, text
    word, kind, named = match.groups()
    rest = text[: match.start()] + " " + text[match.end() :]
    if word in extremes and named is None:
        return (kind, 0, extremes[word]), rest
    if word in ORDINAL_WORDS[1:] and named in names:
        return (kind, ORDINAL_WORDS.index(word), names[named]), rest
    return None, text


def _fits(reading: _Reading, rival: Target) -> bool:
    """Whether the expression's attribute words fit ``rival`` too (an object cut by the image's edge may have
    any size)."""
    colours, sizes, neighbours = _attributes(rival.cue)
    return (
        set(reading.colours) <= colours
        and (rival.cue.cut_by_border or set(reading.sizes) <= sizes)
        and set(reading.neighbours) <= set(neighbours)
    )


def _centre(box: BBox) -> tuple[float, float]:
    return ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)


def _ranks(target: Target, rivals: list[Target]) -> dict[str, int | None]:
    """The target's 0-based rank from each side among itself and ``rivals``, counting the rivals whose box
    centre lies clearly beyond its own on that side (by half the larger of the two boxes' extents); None for a
    side where a rival lies about level with it, as in a column of houses along the image's edge: no reader
    can count "the fourth from the west" there."""
    x, y = _centre(target.box)
    ranks: dict[str, int | None] = {"west": 0, "east": 0, "north": 0, "south": 0}
    for rival in rivals:
        cx, cy = _centre(rival.box)
        margin_x = 0.5 * max(target.box.width, rival.box.width)
        margin_y = 0.5 * max(target.box.height, rival.box.height)
        sides = (
            ("west", x - cx, margin_x),
            ("east", cx - x, margin_x),
            ("north", y - cy, margin_y),
            ("south", cy - y, margin_y),
        )
        for side, offset, margin in sides:
            rank = ranks[side]
            if rank is None:
                continue
            if abs(offset) < margin:
                ranks[side] = None
            elif offset > 0:
                ranks[side] = rank + 1
    return ranks


_LINE_SIDES = {"row": ("north", "south"), "column": ("west", "east")}
MAX_LINE = 5
"""Rows and columns are counted up to the fifth from a side."""


def _level(a: Target, b: Target, kind: str) -> bool:
    """Whether two targets lie in one row (``kind`` "row": their centres level north-south by less than half
    the larger height) or one column."""
    (ax, ay), (bx, by) = _centre(a.box), _centre(b.box)
    if kind == "row":
        return abs(ay - by) < 0.5 * max(a.box.height, b.box.height)
    return abs(ax - bx) < 0.5 * max(a.box.width, b.box.width)


def _line(target: Target, fitting: list[Target], kind: str) -> tuple[list[Target], dict[str, int]] | None:
    """The other targets in the target's row (or column) and that line's rank from each of its two sides
    (rows are counted from the north and from the south). A line is a row a reader sees: at least two targets,
    each level with every other. None when the target's line is not one; a side is left out when the targets
    beyond the line on it do not fall into such lines."""
    members = [o for o in fitting if _level(target, o, kind)]
    line = [target, *members]
    if not members or any(not _level(a, b, kind) for i, a in enumerate(line) for b in line[i + 1 :]):
        return None  # a "row" of one is no row: along curved streets the houses form no lines to count
    axis = 1 if kind == "row" else 0
    here = _centre(target.box)[axis]
    ranks: dict[str, int] = {}
    for side, sign in zip(_LINE_SIDES[kind], (-1, 1), strict=True):
        beyond = sorted(
            (o for o in fitting if o not in members and sign * (_centre(o.box)[axis] - here) > 0),
            key=lambda o: -sign * _centre(o.box)[axis],
        )
        # lines beyond, from the far side in: a target starts a new line unless it is level with the first of
        # the current one; a line whose members are not all level with each other is no clean line
        lines: list[list[Target]] = []
        for other in beyond:
            if lines and _level(lines[-1][0], other, kind):
                lines[-1].append(other)
            else:
                lines.append([other])
        if all(
            len(group) > 1 and all(_level(a, b, kind) for i, a in enumerate(group) for b in group[i + 1 :])
            for group in lines
        ):
            ranks[side] = len(lines)
    return members, ranks


def refers(
    expression: str,
    target: Target,
    rivals: list[Target],
    domain: Domain,
    image: tuple[int, int] | None = None,
    anchors: Mapping[str, Target] | None = None,
) -> bool:
    """Whether ``expression`` is true of ``target`` and of no other target in ``rivals`` (the pair's kept
    targets of the same change type and category), read as a reader would (see the comment above). ``image``:
    the image's (width, height), for "at the eastern edge of the image". ``anchors``: the pair's targets by
    the expressions that name them, for "the new house just east of <one of those>" (see
    :func:`by_relation`); without them such an expression refers to nothing."""
    relation = _read_relation(expression, domain)
    if relation is not None:
        anchor = _anchor_named(anchors or {}, relation.anchor)
        reading = _read(relation.head, target, domain)
        if anchor is None or anchor.id == target.id or not reading.true_of_target or _claims(reading):
            return False
        pool = [target, *(o for o in rivals if o.id not in (target.id, anchor.id) and _fits(reading, o))]
        path = _walk(anchor, relation.side, pool, relation.steps)
        return len(path) == relation.steps and path[-1] is target
    reading = _read(expression, target, domain)
    if not reading.true_of_target:
        return False
    fitting = [o for o in rivals if o.id != target.id and _fits(reading, o)]
    if reading.edge is not None:
        if reading.edge not in _edges(target, image):
            return False
        fitting = [o for o in fitting if reading.edge in _edges(o, image)]
    if reading.line is not None:
        kind, line_rank, line_side = reading.line
        line = _line(target, fitting, kind)
        if line is None or line[1].get(line_side) != line_rank:
            return False
        fitting = line[0]  # "in the northernmost row": the reader looks along that row only
    claims = bool(reading.extremes or reading.ordinals or reading.comparatives)
    if not claims:
        return not fitting
    ranks = _ranks(target, fitting)
    area = target.cue.area_fraction
    for side in reading.extremes:
        if ranks[side] != 0:
            return False
    for rank, side in reading.ordinals:
        if ranks[side] != rank:
            return False
    # "the largest ...": larger than every other target the attributes fit
    return all(sign * (area - o.cue.area_fraction) > 0 for sign in reading.comparatives for o in fitting)


def _claims(reading: _Reading) -> bool:
    """Whether an expression places its target by position or comparison (a rank, a line, an image edge)."""
    return bool(reading.extremes or reading.ordinals or reading.comparatives or reading.line or reading.edge)


def without_claims(expression: str, domain: Domain) -> str | None:
    """``expression`` without its position and comparison words (a rank, a row or column, an image edge, an
    extreme or a comparative), to be placed again by the rules; None when it made no such claim or nothing but
    the claim was said. A model's "the westernmost new house" is untrue when another new house lies further
    west, but "the new house" can still be ranked truthfully ("the second new house from the west")."""
    sides = "|".join(SIDE_NAMES[domain].values())
    line_words = "|".join([*EXTREME_WORDS[domain].values(), *ORDINAL_WORDS[1:]])
    edges = "|".join(EDGE_WORDS[domain].values())
    words = "|".join([*EXTREME_WORDS[domain].values(), *_COMPARATIVES])
    line = _LINE_PHRASE.format(word=line_words, side=sides)
    text = re.sub(rf"\s+{line}\b", "", expression, flags=re.I)
    text = re.sub(rf"\s+{_EDGE_PHRASE.format(word=edges)}\b", "", text, flags=re.I)
    text = re.sub(rf"\b(?:{'|'.join(ORDINAL_WORDS[1:])})\s+(.*?)\s+from the (?:{sides})\b", r"\1", text, flags=re.I)
    text = re.sub(rf"\b(?:{words})\b", "", text, flags=re.I)
    stripped = " ".join(text.split())
    if stripped == " ".join(expression.split()) or len(stripped.split()) < 2:
        return None
    return stripped


# ---------------------------------------------------------------------------------------------------------
# Relations to a named neighbour: "the new house just east of the northernmost new house"
# ---------------------------------------------------------------------------------------------------------
#
# Where new houses line curved streets, many have no colour, size, rank, row or image edge of their own. A
# reader can still find one from a neighbour already named: look at the named one, then at the targets the
# words fit that lie level with it on the side said; the one meant must be the nearest of those, clearly
# nearer than the next, and close (nothing the words fit lies between them). From above the side may be a
# diagonal one (streets run every way), and a reader may count on: "the second new house east of ..." is the
# one just east of the one just east of the named one, each step found as above.

_DIAGONAL = 0.5**0.5
DIRECTIONS: dict[str, tuple[float, float]] = {
    "east": (1.0, 0.0),
    "west": (-1.0, 0.0),
    "south": (0.0, 1.0),
    "north": (0.0, -1.0),
    "north-east": (_DIAGONAL, -_DIAGONAL),
    "north-west": (-_DIAGONAL, -_DIAGONAL),
    "south-east": (_DIAGONAL, _DIAGONAL),
    "south-west": (-_DIAGONAL, _DIAGONAL),
}
"""Unit vectors (x east, y south) of the sides a target may lie on beside its neighbour."""
RELATION_WORDS: dict[Domain, dict[str, tuple[str, str]]] = {
    Domain.RS: {side: (f"just {side} of", f"{side} of") for side in DIRECTIONS},
    Domain.NS: {
        "west": ("just left of", "left of"),
        "east": ("just right of", "right of"),
        "north": ("just above", "above"),
        "south": ("just below", "below"),
    },
}
"""How a target is placed beside a named neighbour, next to it ("just east of") and counted from it ("the
second new house east of"); at street level only left, right, above and below."""
RELATION_REACH = 1.0
"""A target is "just east of" its neighbour when the gap between them is at most this many times the larger
of the two objects' extents along that direction."""
MAX_STEPS = 5
"""A reader counts up to the fifth target from a named neighbour along a row of houses (RefCOCO-style
"fifth from the left" is still read at a glance; beyond it readers lose count)."""
TEMPORAL_PREFIX = {ChangeType.APPEAR: "new", ChangeType.DISAPPEAR: "former", ChangeType.STATE_CHANGE: "altered"}
"""Said before the noun of a related target whose own words say its change only in a clause ("the house
that was built" -> "the new house just east of ..."): the clause would otherwise follow the neighbour's name."""


@dataclass(frozen=True)
class _Relation:
    side: str
    steps: int
    head: str
    anchor: str


def _relation_phrases(domain: Domain) -> dict[str, tuple[str, bool]]:
    """Each relation phrase of ``domain`` as read (plain words) -> (its side, whether it says "just beside")."""
    phrases: dict[str, tuple[str, bool]] = {}
    for side, (next_to, counted_from) in RELATION_WORDS[domain].items():
        phrases[_plain(next_to).strip()] = (side, True)
        phrases[_plain(counted_from).strip()] = (side, False)
    return phrases


_RELATION_PHRASES = {domain: _relation_phrases(domain) for domain in Domain}
_RELATION_PATTERNS = {
    domain: re.compile(" (" + "|".join(map(re.escape, sorted(phrases, key=len, reverse=True))) + ") ")
    for domain, phrases in _RELATION_PHRASES.items()
}
_COUNTED = re.compile(r"(the) (" + "|".join(ORDINAL_WORDS[1:MAX_STEPS]) + r") (.+)")
_RANK_WORDS = frozenset({*ORDINAL_WORDS[1:], *(w for side in EXTREME_WORDS.values() for w in side.values())})
"""Words that rank a target ("seventh", "westernmost"); with :data:`_COMPARATIVES` they precede its change."""


def _read_relation(expression: str, domain: Domain) -> _Relation | None:
    """What "the [second] <head> [just] east of <name>" says: the side, how many steps from the named
    neighbour, the words before the relation (without the ordinal) and the neighbour's name; None otherwise."""
    text = _plain(expression)
    match = _RELATION_PATTERNS[domain].search(text)
    if match is None:
        return None
    side, beside = _RELATION_PHRASES[domain][match.group(1)]
    head, anchor = text[: match.start()].strip(), text[match.end() :].strip()
    counted = _COUNTED.match(head)
    if beside == (counted is not None):  # "the second ... just east of" or "the ... east of": not a relation
        return None
    if counted is not None and " from the " in head:
        return None  # a rank with a landmark: "the second new house from the west north of the pool"
    if counted is None:
        return _Relation(side, 1, head, anchor)
    return _Relation(side, ORDINAL_WORDS.index(counted.group(2)) + 1, f"the {counted.group(3)}", anchor)


def is_relational(expression: str, domain: Domain) -> bool:
    """Whether ``expression`` places its target beside a named neighbour (such a name never anchors another)."""
    return _read_relation(expression, domain) is not None


def _anchor_named(anchors: Mapping[str, Target], words: str) -> Target | None:
    plain = _plain(words).strip()
    return next((target for name, target in anchors.items() if _plain(name).strip() == plain), None)


def _along(side: str, box: BBox, anchor: BBox) -> tuple[float, float, float, float]:
    """How far ``box``'s centre lies beyond ``anchor``'s on ``side`` and across that direction, with half the
    larger extent of the two boxes along and across it."""
    (x, y), (ax, ay) = _centre(box), _centre(anchor)
    dx, dy = DIRECTIONS[side]
    along = dx * (x - ax) + dy * (y - ay)
    across = abs(dx * (y - ay) - dy * (x - ax))
    extent_along = max(abs(dx) * b.width + abs(dy) * b.height for b in (box, anchor))
    extent_across = max(abs(dy) * b.width + abs(dx) * b.height for b in (box, anchor))
    return along, across, 0.5 * extent_along, 0.5 * extent_across


def _next_beside(current: Target, side: str, pool: list[Target]) -> Target | None:
    """The target of ``pool`` a reader finds "just <side> of" ``current``: level with it on that side and close
    to it, and every other one of ``pool`` on that side clearly farther (one only a little off level counts: a
    reader could take it too); None when there is no such one."""
    seen = []
    for other in pool:
        if other.id == current.id:
            continue
        along, across, margin, level = _along(side, other.box, current.box)
        if along > 0 and across < 2 * level:
            seen.append((along, across, margin, level, other))
    if not seen:
        return None
    along, across, margin, level, nearest = min(seen, key=lambda s: s[0])
    if along <= margin or across >= level or along - margin > RELATION_REACH * 2 * margin:
        return None
    for other_along, _, other_margin, _, other in seen:
        if other is not nearest and other_along < along + 0.5 * max(margin, other_margin):
            return None
    return nearest


NextBeside = dict[tuple[frozenset[str], str, str], "Target | None"]
"""Memo of :func:`_next_beside` by (ids of the pool, current target's id, side), shared by the walks over one
pair's targets."""


def _walk(
    anchor: Target,
    side: str,
    pool: list[Target],
    steps: int,
    memo: NextBeside | None = None,
    pool_ids: frozenset[str] | None = None,
) -> list[Target]:
    """The targets of ``pool`` a reader counts from ``anchor`` towards ``side`` (each just beside the one before,
    all within reach of the anchor's line), at most ``steps`` of them. Whether ``pool`` holds the anchor makes
    no difference: each step lies beyond the one before on that side, so the anchor is always behind.
    ``pool_ids``: the ids of ``pool``, when the caller walks one pool from many anchors."""
    path: list[Target] = []
    current = anchor
    memo = {} if memo is None else memo
    ids = pool_ids if pool_ids is not None else frozenset(o.id for o in pool)
    while len(path) < steps:
        key = (ids, current.id, side)
        if key not in memo:
            memo[key] = _next_beside(current, side, pool)
        following = memo[key]
        if following is None:
            break
        _, across, _, level = _along(side, following.box, anchor.box)
        if across >= 2 * level:  # the line has bent away: "the third east of" would no longer be true
            break
        path.append(following)
        current = following
    return path


def _relation_phrase(head: str, side: str, steps: int, name: str, domain: Domain) -> str:
    beside, counted = RELATION_WORDS[domain][side]
    if steps == 1:
        return f"{head} {beside} {name}"
    article, rest = head.split(" ", 1)
    return f"{article} {ORDINAL_WORDS[steps - 1]} {rest} {counted} {name}"


def relational_head(expression: str, change_type: ChangeType) -> str | None:
    """The noun phrase of ``expression`` that a relation follows: its head before any "that" clause, with the
    change said before the noun when only the clause said it; None for an expression not starting with "the"."""
    head, that, _ = expression.partition(" that ")
    words = head.split(" ")
    if len(words) < 2 or words[0].lower() != "the":
        return None
    if not that:
        return head
    # after a rank or comparison: "the seventh new house", "the westernmost new house", not "the new seventh ..."
    ranked = words[1].lower() in _RANK_WORDS or words[1].lower() in _COMPARATIVES
    at = 2 if ranked and len(words) > 2 else 1
    return " ".join([*words[:at], TEMPORAL_PREFIX[change_type], *words[at:]])


def by_relation(
    expressions: list[str],
    target: Target,
    rivals: list[Target],
    anchors: Mapping[str, Target],
    domain: Domain,
    memo: NextBeside | None = None,
) -> str | None:
    """One of ``expressions`` placed beside a named neighbour ("the new house just east of the northernmost new
    house", "the second new house south-west of ..."): ``anchors`` maps the expressions of the pair's named
    targets to them, none itself placing a target beside another (:func:`is_relational`: no chains); the one
    with the fewest steps from its neighbour, then one whose neighbour's name has no "that" clause, then the
    shortest, that a reader would follow to ``target``
    alone among ``rivals`` (see :func:`refers`), or None. A neighbour whose name holds the target's own noun
    phrase is not used. ``memo``: one dict for all the targets of a pair
    (the walks from each neighbour are then found once)."""
    options: list[tuple[int, bool, int, str]] = []
    memo = {} if memo is None else memo
    heads = dict.fromkeys(h for e in expressions if (h := relational_head(e, target.change_type)))
    own_landmark = landmark_phrase(target.cue, target.change_type, domain)
    for head in heads:
        reading = _read(head, target, domain)
        if not reading.true_of_target or _claims(reading):
            continue
        fitting = [o for o in rivals if o.id != target.id and _fits(reading, o)]
        pool = [target, *fitting]
        pool_ids = frozenset(o.id for o in pool)
        reached: dict[tuple[str, str], int] = {}  # steps from each neighbour on each side, walked once
        for name, anchor in anchors.items():
            # a neighbour named after the target's own words ("the northernmost new house next to the new
            # red-roofed building", for the new red-roofed building) sends the reader round in a circle
            if anchor.id == target.id or any(_says(_plain(name), own) for own in (head, own_landmark) if own):
                continue
            for side in RELATION_WORDS[domain]:
                if (anchor.id, side) not in reached:
                    path = _walk(anchor, side, pool, MAX_STEPS, memo, pool_ids)
                    reached[anchor.id, side] = path.index(target) + 1 if target in path else 0
                steps = reached[anchor.id, side]
                if steps:
                    text = _relation_phrase(head, side, steps, name, domain)
                    # a name ending in its own clause ("... that was built") reads as if it told of the target
                    options.append((steps, " that " in f" {name} ", len(text.split()), text))
    return min(options)[-1] if options else None


def _with_rank(
    expression: str,
    reading: _Reading,
    target: Target,
    fitting: list[Target],
    domain: Domain,
    image: tuple[int, int] | None = None,
) -> tuple[int, str] | None:
    """``expression`` with the target's rank from its nearest side among ``fitting`` (the other targets a
    reader would take it for), or, where no side gives a rank to say, its rank along its row or column ("the
    third new house from the west in the northernmost row"); with the count a reader makes (lower is easier).
    None when nothing can be said. ``reading`` is :func:`_read` of ``expression``; an expression that places its
    target already is placed afresh without those words (:func:`without_claims`)."""
    if _claims(reading):
        stripped = without_claims(expression, domain)
        if stripped is None:
            return None
        expression, reading = stripped, _read(stripped, target, domain)
    if not reading.true_of_target or _claims(reading):
        return None
    # "the second building from the west beside the road", not "... beside the road from the west"
    base = expression
    for phrase in reading.neighbours:
        base = re.sub(rf"\s+{re.escape(phrase)}(?=\s|$)", "", base, count=1, flags=re.IGNORECASE)
    relation = " ".join(reading.neighbours)
    options: list[tuple[int, str]] = []
    for side, rank in _ranks(target, fitting).items():
        if rank is not None and rank < MAX_ORDINAL:
            text = ordinal_expression(expression, 0, side, domain) if rank == 0 else None
            text = text or ordinal_expression(base, rank, side, domain, relation)
            options += [(rank, text)] if text else []
    if not options:
        # along the edge of the image the target is cut by: "the northernmost new house at the eastern edge"
        for edge in _edges(target, image):
            members = [o for o in fitting if edge in _edges(o, image)]
            where = " ".join([_edge_phrase(edge, domain), relation])
            along = _LINE_SIDES["row" if edge in ("west", "east") else "column"]  # north-south along an east edge
            if not members:
                options.append((1, _with_relation(base, where)))
            for side, rank in _ranks(target, members).items():
                if members and side in along and rank is not None and rank < MAX_ORDINAL:
                    text = ordinal_expression(base, rank, side, domain, where)
                    options += [(rank + 1, text)] if text else []
        for kind, (first, second) in _LINE_SIDES.items():
            line = _line(target, fitting, kind)
            if line is None:
                continue
            members, line_ranks = line
            across = {k: v for k, v in _ranks(target, members).items() if k not in (first, second)}
            for line_side, line_rank in line_ranks.items():
                if line_rank >= MAX_LINE:
                    continue
                where = " ".join([_line_phrase(kind, line_rank, line_side, domain), relation])
                for side, rank in across.items():
                    if rank is not None and rank < MAX_ORDINAL:
                        text = ordinal_expression(base, rank, side, domain, where)
                        options += [(rank + line_rank + 1, text)] if text else []
    return min(options, key=lambda o: (o[0], len(o[1]))) if options else None


def _with_relation(expression: str, relation: str) -> str:
    """``relation`` said after the noun phrase and its change: "the house that was built at the eastern edge of
    the image" (after a landmark, the clause would seem to tell of the landmark)."""
    return " ".join(f"{expression} {relation}".split())


def by_rank(
    expressions: list[str], target: Target, rivals: list[Target], domain: Domain, image: tuple[int, int] | None = None
) -> str | None:
    """One of ``expressions`` with the target's rank from its nearest side among the rivals it fits ("the
    second grey building from the west that appeared"): the one with the lowest rank, shortest on a tie; None
    when every rank is too far to say."""
    options = []
    for expression in expressions:
        reading = _read(expression, target, domain)
        fitting = [o for o in rivals if o.id != target.id and _fits(reading, o)]
        ranked = _with_rank(expression, reading, target, fitting, domain, image)
        if ranked is not None:
            options.append((ranked[0], len(ranked[1].split()), ranked[1]))
    return min(options)[2] if options else None


def same_kind(target: Target, kept: list[Target]) -> list[Target]:
    """The other kept single targets a reader could mistake ``target`` for: same change type and category."""
    return [
        o
        for o in kept
        if o.id != target.id
        and not o.no_target
        and not o.member_ids
        and (o.change_type, o.category) == (target.change_type, target.category)
    ]


def drop_shared_expressions(
    kept: list[Target], domain: Domain, image: tuple[int, int] | None = None, seen: list[Target] | None = None
) -> None:
    """The same words on two targets (of different categories, or a model's stock phrase) refer to neither:
    each target sharing an expression gets it with its rank from one side among those sharing it and the
    others of its kind the words fit ("the westernmost ..."; among ``seen``, every change a reader sees,
    when given), or loses it when that is too far to say; a target left with no expression is discarded."""
    users: dict[str, list[Target]] = {}
    for target in kept:
        for expression in dict.fromkeys(e.lower() for e in target.expressions):
            users.setdefault(expression, []).append(target)
    taken = set(users)
    for text, sharing in users.items():
        if len(sharing) < 2:
            continue
        for target in sharing:
            original = next(e for e in target.expressions if e.lower() == text)
            reading = _read(original, target, domain)
            fitting = [o for o in sharing if o.id != target.id]
            fitting += [o for o in same_kind(target, seen or kept) if o not in fitting and _fits(reading, o)]
            ranked = _with_rank(original, reading, target, fitting, domain, image)
            replacement = [ranked[1]] if ranked is not None and ranked[1].lower() not in taken else []
            taken.update(r.lower() for r in replacement)
            target.expressions = [r for e in target.expressions for r in (replacement if e.lower() == text else [e])]
    for target in kept:
        if not target.expressions:
            target.leave_out("unnamed")
