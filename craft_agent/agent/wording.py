"""Deterministic referring expressions: CRAFT's absolute descriptions, their natural rewrites, and checks.

- :func:`absolute_description`: stage 1 style, with the grid position ("the red-roofed building in the
  top-left that appeared").
- :func:`referring_expressions`: stage 4 style, several different natural expressions with temporal wording
  by change type, no grid words and nothing that leaks the annotation (ids, numbers, "mask", "box").
- :func:`distinguishing_expressions`: expressions that single a target out from others the first wording also
  fits, by the attribute that differs most (colour, size, position, neighbour, shape).
- :func:`is_leaky` and :func:`mentions_grid`: the checks every expression must pass.

Variety without randomness: every choice is ranked by a sha256 of a seed string (the candidate id, the pair
and the description), so the same input always gives the same words and different targets get different ones.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from craft_agent.agent.cues import PALETTE
from craft_agent.agent.schemas import BeautifyContext, ChangeCue, DisambiguateContext
from craft_agent.grid import all_cell_names
from craft_agent.models import Category, ChangeType, Domain

# ---------------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------------

_GRID_NAMES = sorted(
    {name for n in range(2, 6) for name in all_cell_names(n, n) if "-" in name or name == "center"},
    key=len,
    reverse=True,
)
_GRID_PATTERN = re.compile(
    r"\b(?:"
    + "|".join(re.escape(name).replace(r"\-", r"[\s-]") for name in _GRID_NAMES)
    + r"|centre|sector|sectors|cell|cells|grid|row|rows|column|columns|quadrant|quadrants"
    + r"|(?:top|upper|mid|middle|lower|bottom)[\s-](?:left|right|center|centre)"
    + r")\b",
    re.IGNORECASE,
)
_LEAK_PATTERN = re.compile(
    r"\d"  # coordinates, ids, sizes in pixels, scores
    r"|\b(?:masks?|candidates?|boxe?s?|bbox(?:es)?|pixels?|px|coordinates?|ids?|rle|json|polygons?"
    r"|confidence|scores?|cues?|exg|contrast|segmentation)\b"
    r"|\b[0-9a-f]{8,}\b",
    re.IGNORECASE,
)


_OBJECT_LINE = re.compile(
    r"\bin the (?:(?:western|eastern|northern|southern|left|right)most|upper|lower) (?:row|column)\b"
    r"|\bin the (?:second|third|fourth|fifth) (?:row|column)"
    r" from the (?:west|east|north|south|left|right|top|bottom)\b",
    re.IGNORECASE,
)
"""A row or column of the changed objects themselves ("in the northernmost row", "in the second column from
the west"), which locates a target among its like without the image's grid."""


def mentions_grid(expression: str) -> bool:
    """Whether an expression uses absolute grid words ("top-left", "mid-right", "center", "sector", "cell",
    "row", "column", "grid", "quadrant"), which referring expressions must not. A row or column of objects
    counted from a side (see :data:`_OBJECT_LINE`) is no grid word."""
    return _GRID_PATTERN.search(_OBJECT_LINE.sub(" ", expression)) is not None


def is_leaky(expression: str) -> bool:
    """Whether an expression leaks how it was made: digits (coordinates, ids, sizes), hex ids, or annotation
    words ("mask", "candidate", "box", "pixel", "confidence"...)."""
    return _LEAK_PATTERN.search(expression) is not None


# ---------------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------------

_DEFAULT_NOUNS: tuple[tuple[str, str], ...] = (("structure", "structures"), ("feature", "features"))

# Categories whose colour is worth saying before the noun, and how (building colours are their roofs').
_COLOURED = {Category.BUILDING, Category.ROOF, Category.VEHICLE, Category.FACADE, Category.OBJECT, Category.ROAD, None}
HOUSE_MAX_LENGTH_M = 30.0
"""A building longer than this is not called a house (houses are about 8-30 m long)."""


@dataclass(frozen=True)
class _Phrase:
    """A temporal phrase placed before the noun (prefix) or after it (suffix)."""

    text: str
    prefix: bool = False


_APPEAR_BY_CATEGORY: dict[Category, tuple[str, ...]] = {
    Category.BUILDING: ("+newly built", "that {was} built", "that {was} put up"),
    Category.ROOF: ("+newly built", "that {was} built"),
    Category.VEHICLE: ("+newly parked", "that arrived"),
    Category.VEGETATION: ("+newly planted", "that grew"),
    Category.ROAD: ("+newly paved", "that {was} laid"),
    Category.GROUND: ("+newly paved", "that {was} laid"),
    Category.WATER: ("+newly dug", "that appeared"),  # nobody "places" a pond
}
_APPEAR_OTHER = ("+newly placed", "that {was} placed")
_DISAPPEAR_BY_CATEGORY: dict[Category, tuple[str, ...]] = {
    Category.BUILDING: ("that {was} demolished", "that {was} torn down", "+demolished"),
    Category.ROOF: ("that {was} demolished", "that {was} torn down", "+demolished"),
    Category.VEGETATION: ("that {was} cleared", "that {was} cut down", "+cleared"),
    Category.VEHICLE: ("that drove away", "that left", "+departed"),
    Category.WATER: ("that dried up", "+vanished"),
}
_DISAPPEAR_OTHER = ("that {was} removed", "+removed")
_STATE_BY_CATEGORY: dict[Category, tuple[str, ...]] = {
    Category.ROOF: ("that changed from {before} to {after}", "that {was} repainted {after}", "+repainted"),
    Category.BUILDING: ("{whose} changed from {before} to {after}", "that {was} repainted {after}", "+repainted"),
    Category.ROAD: ("that {was} resurfaced", "+freshly paved", "that {was} repaved"),
    Category.FACADE: ("that {was} repainted {after}", "that changed from {before} to {after}", "+repainted"),
}
_PAVED = ("that {was} paved over", "+now paved", "that {was} resurfaced")
_DUG_UP = ("that {was} dug up", "that {is} now bare soil", "that {was} resurfaced")
_GREENED = ("that turned green", "+now thriving", "that grew lush")
_DRIED = ("that dried out", "that lost {its} green")
_STATE_ANY = (
    "that turned from {before} to {after}",
    "that {is} now {after}",
    "that changed {its} look",
    "that {looks} different now",
    "+altered",
)


def _temporal_phrases(target: _Target) -> list[_Phrase]:
    """Temporal wording for the target's change type, category and colours, singular or plural.

    Templates starting with "+" go before the noun ("the newly built ..."), the others after it; phrases
    that name a colour change are dropped when the colours are unknown or the same.
    """
    category, change_type = target.category, target.change_type
    before, after = target.colour_before, target.colour_after
    templates: tuple[str, ...] = ()
    if change_type is ChangeType.APPEAR:
        appear = _APPEAR_BY_CATEGORY.get(category, _APPEAR_OTHER) if category else _APPEAR_OTHER
        templates = ("that appeared", "that {was} added", "+new", *appear)
    elif change_type is ChangeType.DISAPPEAR:
        specific = _DISAPPEAR_BY_CATEGORY.get(category, _DISAPPEAR_OTHER) if category else _DISAPPEAR_OTHER
        templates = ("that {is} no longer there", "that disappeared", "that {was} taken away", *specific)
    elif change_type is ChangeType.STATE_CHANGE:
        if category is Category.GROUND:
            specific = _PAVED if after in ("grey", "light grey", "dark grey", "white") else _DUG_UP
        elif category is Category.VEGETATION:
            specific = _GREENED if target.greener else _DRIED
        else:
            specific = _STATE_BY_CATEGORY.get(category, ()) if category else ()
        templates = (*specific, *_STATE_ANY)
    plural = target.count > 1
    words = {
        "was": "were" if plural else "was",
        "is": "are" if plural else "is",
        "its": "their" if plural else "its",
        "looks": "look" if plural else "looks",
        "whose": "whose roofs" if plural else "whose roof",
        "before": before or "",
        "after": after or "",
    }
    phrases = []
    for template in templates:
        if ("{before}" in template or "{after}" in template) and (not before or not after or before == after):
            continue
        text = template.lstrip("+").format(**words)
        phrases.append(_Phrase(text, prefix=template.startswith("+")))
    return phrases


# ---------------------------------------------------------------------------------------------------------
# What an expression is about
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """Everything the wording needs about one target (from a cue, a context, or both)."""

    change_type: ChangeType | None
    category: Category | None
    domain: Domain
    colour_before: str | None = None
    colour_after: str | None = None
    size: str | None = None
    shape: str | None = None
    neighbours: tuple[str, ...] = ()
    count: int = 1
    greener: bool = False
    seed: str = ""
    length_m: float | None = None

    @property
    def colour(self) -> str | None:
        """The colour of the object in the date where it exists (the earlier one for a disappearance)."""
        if self.change_type is ChangeType.DISAPPEAR:
            return self.colour_before
        if self.change_type is ChangeType.STATE_CHANGE:
            return self.colour_before
        return self.colour_after


def _target_from_cue(
    cue: ChangeCue | None, change_type: ChangeType | None, category: str | None, domain: Domain, count: int, seed: str
) -> _Target:
    if cue is None:
        return _Target(change_type, Category.parse(category), domain, count=count, seed=seed)
    return _Target(
        change_type=change_type,
        category=Category.parse(category) if category is not None else cue.category_hint,
        domain=domain,
        colour_before=cue.colour_before,
        colour_after=cue.colour_after,
        # An object cut by the image's edge shows only part of itself: no size or shape word for it (a house
        # whose corner is in the image is not a "tiny house").
        size=None if cue.cut_by_border else cue.size,
        shape=None if cue.cut_by_border else cue.shape,
        neighbours=tuple(n for n in cue.neighbours if not is_leaky(n) and not mentions_grid(n)),
        count=count,
        greener=cue.greenness_after > cue.greenness_before,
        seed=seed,
        length_m=cue.length_m,
    )


def _rank(items: Iterable[str], seed: str) -> list[str]:
    """Items in a deterministic order that depends on the seed (sha256), duplicates removed."""
    unique = dict.fromkeys(items)
    return sorted(unique, key=lambda item: hashlib.sha256(f"{seed}\x00{item}".encode()).hexdigest())


def _nouns(target: _Target) -> list[str]:
    category = Category.parse(target.category)
    forms = category.nouns(target.domain) if category else _DEFAULT_NOUNS
    if category is Category.BUILDING and not _house_sized(target):
        forms = tuple(form for form in forms if form[0] != "house")
    index = 1 if target.count > 1 else 0
    return [form[index] for form in forms]


def _house_sized(target: _Target) -> bool:
    """Whether a building may be called a house: up to :data:`HOUSE_MAX_LENGTH_M` long where the ground sample
    distance is known, else not large or huge in the image (a warehouse is no house). Without a measured size
    (a group of buildings, a change that did not happen) it is a building: "the demolished houses" was said of
    four warehouses."""
    if target.length_m is not None:
        return target.length_m <= HOUSE_MAX_LENGTH_M
    return target.size is not None and target.size not in ("large", "huge")


def _adjective(target: _Target, colour: str | None) -> str:
    """Colour words before the noun: '' when the category does not take a colour."""
    if not colour or target.category not in _COLOURED:
        return ""
    if target.category is Category.BUILDING:
        return f"{colour.replace(' ', '-')}-roofed"
    return colour


SIZE_ADJECTIVES = {"tiny": "tiny", "small": "small", "medium": "", "large": "large", "huge": "huge"}
SHAPE_ADJECTIVES = {"elongated": "long", "compact": "", "irregular": "irregularly shaped"}
"""How a cue's size and shape are said before the noun ('' for the unremarkable ones)."""
SIZE_COMPARISONS = frozenset({"larger", "largest", "smaller", "smallest"})
"""Distinguishing words that compare sizes: said without a size adjective of their own."""


def _join(*parts: str) -> str:
    return re.sub(r"\s+", " ", " ".join(p for p in parts if p)).strip()


def _noun_phrases(target: _Target, with_colour: bool, with_size: bool) -> list[str]:
    """Noun phrases without article or temporal wording, e.g. 'small red-roofed building'."""
    colour = target.colour if with_colour else None
    size = SIZE_ADJECTIVES.get(target.size or "", "") if with_size else ""
    shape = SHAPE_ADJECTIVES.get(target.shape or "", "") if with_size and not size else ""
    return [_join(size or shape, _adjective(target, colour), noun) for noun in _nouns(target)]


def _expressions(target: _Target, modifiers: Sequence[str] = ()) -> list[str]:
    """Every expression the templates give for a target, best-looking first within each template.

    ``modifiers`` are distinguishing words placed before the noun phrase ("northernmost", "larger").
    """
    phrases = _temporal_phrases(target) or [_Phrase("")]
    relations = ["", *target.neighbours]
    out: list[str] = []
    for modifier in modifiers or [""]:
        for with_colour in (True, False):
            # "the smaller large building" contradicts itself: a size comparison says the size alone
            for with_size in (False,) if modifier in SIZE_COMPARISONS else (False, True):
                for noun in _noun_phrases(target, with_colour, with_size):
                    if modifier and re.search(rf"\b{re.escape(modifier)}\b", noun):
                        continue  # "the irregularly shaped irregularly shaped building"
                    for relation in relations:
                        for phrase in phrases:
                            if phrase.prefix:
                                text = _join("the", modifier, phrase.text, noun, relation)
                            else:  # the clause before the landmark, which it would otherwise seem to tell of
                                text = _join("the", modifier, noun, phrase.text, relation)
                            out.append(text)
    colour = target.colour
    return [
        text
        for text in out
        if text != "the"
        and not is_leaky(text)
        and not mentions_grid(text)
        # "the red roof that turned from red to grey" says the colour twice: keep the version without it
        and not (colour and len(re.findall(rf"\b{re.escape(colour)}\b", text)) > 1)
    ]


def _novelty(text: str, used: Sequence[set[str]]) -> float:
    """Minus the largest word overlap (Jaccard) with expressions already chosen: higher is more different."""
    words = set(text.split())
    return -max((len(words & other) / max(1, len(words | other)) for other in used), default=0.0)


def _pick_varied(candidates: Sequence[str], wanted: int, seed: str) -> list[str]:
    """``wanted`` different expressions, preferring ones whose words differ most from those already chosen."""
    ranked = _rank(candidates, seed)
    chosen: list[str] = []
    while ranked and len(chosen) < wanted:
        used = [set(text.split()) for text in chosen]
        best = max(ranked, key=lambda text: (_novelty(text, used), -ranked.index(text)))
        chosen.append(best)
        ranked.remove(best)
    return chosen


# ---------------------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------------------


def absolute_description(
    cue: ChangeCue, change_type: ChangeType, category: str | None, domain: Domain = Domain.RS
) -> str:
    """A CRAFT stage-1 description with the absolute grid position, e.g. "the red-roofed building in the
    top-left that appeared" or "the cluster of trees in the mid-right that was cleared".

    Deterministic: the wording variant is chosen by a hash of the candidate id.
    """
    target = _target_from_cue(cue, change_type, category, domain, 1, cue.candidate_id)
    suffixes = [p.text for p in _temporal_phrases(target) if not p.prefix] or [""]
    options = [
        _join("the", noun, f"in the {cue.grid_cell}", suffix)
        for with_colour in (True, False)
        for noun in _noun_phrases(target, with_colour=with_colour, with_size=False)
        for suffix in suffixes
    ]
    colour = target.colour
    once = [text for text in options if not colour or len(re.findall(rf"\b{re.escape(colour)}\b", text)) <= 1]
    # prefer the versions that name the colour: they single the target out best
    coloured = [text for text in once if colour and re.search(rf"\b{re.escape(colour)}\b", text)]
    return _rank(coloured or once or options, target.seed)[0]


def referring_expressions(context: BeautifyContext, wanted: int) -> list[str]:
    """``wanted`` different natural referring expressions for the context's target.

    They use the category, colours (before and after for a state change), size, shape and neighbour phrases
    of the cue, temporal wording by change type, plural forms when ``context.count > 1``, and never grid
    words or leaked annotation details. A no-target context (``change_type`` None) gets expressions of a
    plausible change of its category, worded like any other. Fewer come back only when the templates run
    out (never fewer than one).
    """
    seed = f"{context.pair_id}\x00{context.description}\x00{context.count}"
    change_type = context.change_type
    if change_type is None:
        # a described change that did not happen: word it like a real one, of a kind chosen by the seed
        change_type = ChangeType(_rank([t.value for t in ChangeType], seed)[0])
    category = (
        context.category if context.category is not None else (context.cue.category_hint if context.cue else None)
    )
    target = _target_from_cue(context.cue, change_type, category, context.domain, context.count, seed)
    if context.cue is None:
        target = _with_description_colours(target, context.description)
    return _pick_varied(_expressions(target), max(1, wanted), seed)


def _with_description_colours(target: _Target, description: str) -> _Target:
    """Take colour words from a description when no cue says them (in the order the description says them)."""
    remaining, spotted = description.lower(), []
    for name in sorted(PALETTE, key=len, reverse=True):  # "dark grey" before "grey"
        pattern = rf"\b{re.escape(name)}\b"
        spotted += [(match.start(), name) for match in re.finditer(pattern, remaining)]
        remaining = re.sub(pattern, lambda match: "#" * len(match.group()), remaining)
    found = [name for _, name in sorted(spotted)]
    if not found:
        return target
    before = found[0]
    after = found[1] if len(found) > 1 else found[0]
    return replace(target, colour_before=before, colour_after=after)


@dataclass(frozen=True)
class _Distinction:
    """A way to single the target out, with how strongly it does (higher: more distinctive).

    Either a ``modifier`` put before the noun ("northernmost"), or a ``target`` whose expressions must say one
    of ``must_say`` (its colour, a neighbour phrase only it has).
    """

    strength: float
    modifier: str = ""
    target: _Target | None = None
    must_say: tuple[str, ...] = ()


def _centre(cue: ChangeCue) -> tuple[float, float]:
    return ((cue.box.x0 + cue.box.x1) / 2, (cue.box.y0 + cue.box.y1) / 2)


def _present_colour(cue: ChangeCue, change_type: ChangeType) -> str:
    return cue.colour_before if change_type is ChangeType.DISAPPEAR else cue.colour_after


def _distinctions(context: DisambiguateContext, base: _Target) -> list[_Distinction]:
    target, others = context.target, context.others
    change_type = context.change_type
    found: list[_Distinction] = []
    # colour: the target's colour that none of the others has
    colour = _present_colour(target, change_type)
    other_colours = {_present_colour(o, change_type) for o in others}
    if colour not in other_colours:
        found.append(_Distinction(3.0, target=base, must_say=(colour,)))
    # size: clearly larger or smaller than every other
    if others:
        largest_other = max(o.area_fraction for o in others)
        smallest_other = min(o.area_fraction for o in others)
        two = len(others) == 1
        if target.area_fraction >= 1.5 * largest_other:
            ratio = target.area_fraction / max(largest_other, 1e-9)
            found.append(_Distinction(min(3.0, 1.0 + ratio / 3), "larger" if two else "largest"))
        elif target.area_fraction * 1.5 <= smallest_other:
            ratio = smallest_other / max(target.area_fraction, 1e-9)
            found.append(_Distinction(min(3.0, 1.0 + ratio / 3), "smaller" if two else "smallest"))
    # position: the extreme along one axis, by at least half the target's own extent
    if others:
        x, y = _centre(target)
        margin_x = 0.5 * target.box.width
        margin_y = 0.5 * target.box.height
        other_centres = [_centre(o) for o in others]
        words = EXTREME_WORDS[context.domain]
        checks = {
            "west": all(x + margin_x <= ox for ox, _ in other_centres),
            "east": all(x - margin_x >= ox for ox, _ in other_centres),
            "north": all(y + margin_y <= oy for _, oy in other_centres),
            "south": all(y - margin_y >= oy for _, oy in other_centres),
        }
        for direction, holds in checks.items():
            if holds:
                found.append(_Distinction(2.0, words[direction]))
    # neighbour: a relation to a landmark the others do not share
    shared = {n for o in others for n in o.neighbours}
    unique = tuple(n for n in base.neighbours if n not in shared)
    if unique:
        found.append(_Distinction(1.5, target=replace(base, neighbours=unique), must_say=unique))
    # shape: a shape none of the others has
    if target.shape not in {o.shape for o in others} and target.shape != "compact":
        found.append(_Distinction(1.0, SHAPE_ADJECTIVES[target.shape]))
    return sorted(found, key=lambda d: -d.strength)


def _without_details(target: _Target) -> _Target:
    """The target with no colour, size, shape or neighbours: a distinguishing modifier alone must do it."""
    return _Target(target.change_type, target.category, target.domain, count=target.count, seed=target.seed)


def distinguishing_expressions(context: DisambiguateContext, wanted: int = 3) -> list[str]:
    """Expressions that fit the target but not the other targets the first expression also fits.

    The attribute that differs most comes first: a colour none of the others has, clearly larger or smaller
    ("the larger of the two buildings that appeared" becomes "the larger building that appeared"), an extreme
    position ("northernmost", or "leftmost" at street level), a neighbour only the target has, a shape of its
    own. Every expression carries at least one such attribute; when nothing distinguishes the target, the
    fullest description available comes back.
    """
    seed = f"{context.pair_id}\x00{context.expression}\x00{context.target.candidate_id}"
    base = _target_from_cue(context.target, context.change_type, context.category, context.domain, 1, seed)
    options: list[str] = []
    for distinction in _distinctions(context, base):
        if distinction.target is not None:
            candidates = [
                text
                for text in _expressions(distinction.target)
                if any(re.search(rf"\b{re.escape(word)}\b", text) for word in distinction.must_say)
            ]
        else:
            plain = _expressions(_without_details(base), [distinction.modifier])
            detailed = _expressions(base, [distinction.modifier])
            candidates = plain[:4] + detailed
        options.extend(_pick_varied(candidates, max(1, wanted), f"{seed}\x00{distinction.modifier}"))
        if len(options) >= 3 * wanted:
            break
    if not options:
        options = _expressions(base)
    return _pick_varied(options, max(1, wanted), seed)


ORDINAL_WORDS = ("", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
"""Ordinal words by 0-based rank (rank 0 is said with an extreme word instead)."""
EXTREME_WORDS: dict[Domain, dict[str, str]] = {
    Domain.RS: {"west": "westernmost", "east": "easternmost", "north": "northernmost", "south": "southernmost"},
    Domain.NS: {"west": "leftmost", "east": "rightmost", "north": "upper", "south": "lower"},
}
"""The word for the object furthest towards a side: compass words from above, left and right at street level."""
SIDE_NAMES: dict[Domain, dict[str, str]] = {
    Domain.RS: {"west": "west", "east": "east", "north": "north", "south": "south"},
    Domain.NS: {"west": "left", "east": "right", "north": "top", "south": "bottom"},
}
"""How a rank's side is said: "the second car from the left", "the third building from the north"."""
MAX_ORDINAL = len(ORDINAL_WORDS)
"""Ranks beyond this are not said: no one counts to the fifteenth house from the west (a row says more: "the
second house from the west in the northernmost row")."""


def ordinal_expression(
    expression: str, rank: int, direction: str, domain: Domain = Domain.RS, relation: str = ""
) -> str | None:
    """``expression`` made unique by the target's rank from one side among the objects it also fits.

    Args:
        expression: a referring expression starting with "the" ("the grey building that appeared").
        rank: 0-based rank of the target counted from ``direction`` (0: the westernmost...), among the objects
            the expression fits: the rank is only true when counted so.
        direction: west, east, north or south (said as left, right, top, bottom at street level).
        domain: the imagery's domain (compass words suit aerial images).
        relation: a landmark phrase ("beside the road") taken out of ``expression``, said after the rank's
            side and the change ("the second building from the west that appeared beside the road": after
            the landmark, "that appeared" would seem to tell of the road).

    Returns:
        "the westernmost grey building that appeared" for rank 0, "the second grey building from the west
        that appeared" for rank 1, or None when the rank is too far to say or the expression does not start
        with "the".
    """
    words = expression.split(" ", 1)
    if rank >= MAX_ORDINAL or len(words) < 2 or words[0].lower() != "the":
        return None
    rest = words[1]
    head, that, tail = rest.partition(" that ")
    if rank == 0:
        where = f"{words[0]} {EXTREME_WORDS[domain][direction]} {head}"
    else:
        where = f"{words[0]} {ORDINAL_WORDS[rank]} {head} from the {SIDE_NAMES[domain][direction]}"
    return " ".join(f"{where}{that}{tail} {relation}".split())


_PLURAL_VERBS = {
    "is": "are",
    "was": "were",
    "has": "have",
    "looks": "look",
    "seems": "seem",
    "stands": "stand",
    "appears": "appear",
    "lies": "lie",
    "sits": "sit",
    "covers": "cover",
    "shows": "show",
}
_SINGULAR_VERBS = {plural: singular for singular, plural in _PLURAL_VERBS.items()}
_RELATIVE_VERB = re.compile(r"\b(that|which|who)\s+(\w+)\b", re.IGNORECASE)
_ARTICLE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])(?!u[nsrt]i|use|one|eu)")


def fix_agreement(expression: str, plural: bool) -> str:
    """``expression`` with the verb after "that" agreeing with the number of its target ("the roofs that
    looks different" -> "the roofs that look different") and "a" before a vowel sound made "an"."""

    def verb(match: re.Match[str]) -> str:
        table = _PLURAL_VERBS if plural else _SINGULAR_VERBS
        word = match.group(2)
        replacement = table.get(word.lower())
        return f"{match.group(1)} {replacement}" if replacement else match.group(0)

    return _ARTICLE.sub(lambda m: f"{m.group(1)}n ", _RELATIVE_VERB.sub(verb, expression))
