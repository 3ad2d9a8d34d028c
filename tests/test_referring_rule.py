"""The referring rule: one target per expression within a pair, in words that agree."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from craft_agent.agent import nodes
from craft_agent.agent.compose import absent_changes, same_kind_groups
from craft_agent.agent.nodes import AgentConfig, AgentResources
from craft_agent.agent.offline import OfflineBackend
from craft_agent.agent.run import agent_resources, generate
from craft_agent.agent.schemas import BeautifyContext, ChangeCue
from craft_agent.agent.state import AgentState, Target
from craft_agent.agent.targets import (
    by_rank,
    by_relation,
    drop_shared_expressions,
    is_relational,
    keep_labelled,
    refers,
    relational_head,
    visible,
    without_claims,
)
from craft_agent.agent.wording import fix_agreement, ordinal_expression, referring_expressions
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.masks import ClassicalMaskEngine
from craft_agent.models import BBox, ChangeType, Domain, ImagePair, RLEMask
from craft_agent.synthetic import write_examples


def _house(name: str, x: int, y: int, colour: str = "grey", size: str = "small", **cue: object) -> Target:
    box = BBox(x0=x, y0=y, x1=x + 20, y1=y + 20)
    return Target(
        id=name,
        candidate_id=name,
        change_type=ChangeType.APPEAR,
        category="building",
        description="a building",
        box=box,
        status="accepted",
        cue=ChangeCue.model_validate(
            {
                "candidate_id": name,
                "grid_cell": "center",
                "box": box,
                "detector_type": "appear",
                "confidence": 0.9,
                "area_fraction": 0.01,
                "size": size,
                "shape": "compact",
                "colour_before": "green",
                "colour_after": colour,
                "surroundings_before": "green",
                "surroundings_after": "green",
                "greenness_before": 0.1,
                "greenness_after": 0.0,
                "texture_before": 1.0,
                "texture_after": 1.0,
                "contrast_before": 1.0,
                "contrast_after": 5.0,
                "brightness_change": 3.0,
                **cue,
            }
        ),
    )


def test_an_expression_refers_only_when_true_of_its_target_and_of_no_other() -> None:
    red = _house("red", 10, 100, colour="red")
    west, middle, east = _house("w", 40, 10), _house("m", 80, 200), _house("e", 120, 50, size="large")
    houses = [red, west, middle, east]
    rs = Domain.RS

    def others(t: Target) -> list[Target]:
        return [o for o in houses if o.id != t.id]

    # the attributes alone: "grey" fits three houses, "red" one
    assert not refers("the grey-roofed building that appeared", middle, others(middle), rs)
    assert refers("the red-roofed building that appeared", red, others(red), rs)
    # untrue of the target: it is not red, it is not large
    assert not refers("the red-roofed building that appeared", middle, others(middle), rs)
    assert not refers("the large building that appeared", middle, others(middle), rs)
    assert refers("the large building that appeared", east, others(east), rs)
    # position words count among the houses the attributes fit: the red one is further west, not grey
    assert refers("the westernmost grey-roofed building that appeared", west, others(west), rs)
    assert not refers("the westernmost building that appeared", west, others(west), rs)
    assert refers("the southernmost building that appeared", middle, others(middle), rs)
    assert not refers("the northernmost building that appeared", middle, others(middle), rs)
    assert refers("the second grey-roofed building from the west that appeared", middle, others(middle), rs)
    assert not refers("the second building from the west that appeared", middle, others(middle), rs)
    # a rank is said among what the words fit, and is then true
    assert (
        by_rank(["the building that appeared"], middle, others(middle), rs) == "the southernmost building that appeared"
    )
    row = [_house(n, x, 400) for n, x in (("r1", 10), ("r2", 50), ("r3", 90), ("r4", 130))]
    ranked = by_rank(["the building that appeared"], row[2], [row[0], row[1], row[3]], rs)
    assert ranked == "the second building from the east that appeared"  # level with all: no northernmost
    assert refers(ranked, row[2], [row[0], row[1], row[3]], rs)
    # a column of slivers along the image's edge, a few pixels apart across it: counted down the column only
    column = [_house(n, x, y) for n, x, y in (("c1", 0, 500), ("c2", 4, 540), ("c3", 1, 580), ("c4", 3, 620))]
    assert by_rank(["the building that appeared"], column[1], column[::2] + column[3:], rs) == (
        "the second building from the north that appeared"
    )
    # a landmark phrase only refers when the landmark is next to this house alone
    near = [_house(n, x, 300, neighbours=["next to the new pond"]) for n, x in (("a", 10), ("b", 60))]
    assert not refers("the building next to the new pond that appeared", near[0], near[1:], rs)
    assert refers("the westernmost building next to the new pond that appeared", near[0], near[1:], rs)


def test_the_change_is_said_before_a_landmark_it_could_be_taken_for() -> None:
    """In "the building south of the former grey-roofed building that was put up" the reader must guess what was
    put up (43 of 672 expressions drafted on real tiles read so): the clause goes before the landmark, in the
    offline wording and when a rank is added."""
    rs = Domain.RS
    near = [_house(n, x, 300, neighbours=["next to the new pond"]) for n, x in (("a", 10), ("b", 60), ("c", 110))]
    context = BeautifyContext(
        pair_id="p", domain=rs, change_type=ChangeType.APPEAR, category="building", description="-", cue=near[1].cue
    )
    landmarked = [e for e in referring_expressions(context, 8) if "next to the new pond" in e]
    assert landmarked and all(e.endswith("next to the new pond") or " that " not in e for e in landmarked)
    ranked = by_rank(["the building next to the new pond that appeared"], near[1], [near[0], near[2]], rs)
    assert ranked == "the second building from the west that appeared next to the new pond"
    assert refers(ranked, near[1], [near[0], near[2]], rs)
    assert ordinal_expression("the building that appeared", 2, "north", rs, "beside the road") == (
        "the third building from the north that appeared beside the road"
    )


def test_a_shared_stock_phrase_is_ranked_among_all_it_fits() -> None:
    houses = [_house(n, x, 50) for n, x in (("a", 10), ("b", 60), ("c", 110))]
    for house in houses[:2]:
        house.expressions = ["the new structure beside the lane"]
    houses[2].expressions = ["the grey-roofed building that appeared"]
    drop_shared_expressions(houses, Domain.RS)
    # "c" does not say the phrase but is of the same kind and fits it: "b" is second from the west, not easternmost
    assert houses[0].expressions == ["the westernmost new structure beside the lane"]
    assert houses[1].expressions == ["the second new structure beside the lane from the west"]
    assert houses[2].expressions == ["the grey-roofed building that appeared"]


def test_rank_words_make_an_expression_unique() -> None:
    assert ordinal_expression("the grey building that appeared", 0, "west") == (
        "the westernmost grey building that appeared"
    )
    assert ordinal_expression("the grey building that appeared", 2, "north") == (
        "the third grey building from the north that appeared"
    )
    assert ordinal_expression("the grey building", 1, "east") == "the second grey building from the east"
    assert ordinal_expression("the grey building", 12, "east") is None
    assert ordinal_expression("a grey building", 0, "east") is None


def test_verbs_agree_with_the_number_of_targets_and_articles_with_the_sound() -> None:
    assert fix_agreement("the roofs that looks different now", plural=True) == "the roofs that look different now"
    assert fix_agreement("the buildings that was built", plural=True) == "the buildings that were built"
    assert fix_agreement("the roof that were repainted", plural=False) == "the roof that was repainted"
    assert fix_agreement("a orange car beside a unit", plural=False) == "an orange car beside a unit"


def test_no_expression_is_shared_by_two_triplets_of_a_pair(tmp_path: Path) -> None:
    write_examples(tmp_path / "examples", pairs=3, seed=11, size=384)
    workspace = tmp_path / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        ingest(tmp_path / "examples", catalog, store, IngestOptions())
        for mode in ("detector", "labels"):
            generate(catalog, store, OfflineBackend(), ClassicalMaskEngine(), workspace, AgentConfig(proposals=mode))
        for pair in catalog.iter_pairs():
            triplets = list(catalog.iter_triplets(pair_id=pair.id))
            for mode in ("detector", "labels"):
                words = [
                    e.lower() for t in triplets if t.provenance.backends["proposals"] == mode for e in t.expressions
                ]
                assert len(words) == len(set(words)), pair.name


def test_a_building_change_label_is_never_a_state_change() -> None:
    """LEVIR-CD and WHU-CD mark buildings built or demolished: a labelled building the rules judged "changed
    its look" (white roof on dark scrub) appeared; a land-cover label keeps the judged state change."""
    built = _house("b", 10, 10, labelled=True, label_category="building", contrast_before=8.0, contrast_after=30.0)
    gone = _house("g", 60, 10, labelled=True, label_category="building", contrast_before=30.0, contrast_after=8.0)
    field = _house("f", 110, 10, labelled=True, label_category=None)
    targets = [t.model_copy(update={"change_type": ChangeType.STATE_CHANGE}) for t in (built, gone, field)]
    keep_labelled([t.cue for t in targets], targets, [], Domain.RS)
    assert [t.change_type for t in targets] == [ChangeType.APPEAR, ChangeType.DISAPPEAR, ChangeType.STATE_CHANGE]


def test_a_house_in_a_grid_is_named_by_its_row() -> None:
    """Three rows of three houses: no house but the corners is furthest towards a side, and "the second from
    the west" fits a whole column; a row says which."""
    grid = {(r, c): _house(f"h{r}{c}", 10 + 50 * c, 10 + 50 * r) for r in range(3) for c in range(3)}
    rs = Domain.RS
    middle_top = grid[0, 1]
    rivals = [h for h in grid.values() if h is not middle_top]
    assert not refers("the second building from the west that appeared", middle_top, rivals, rs)
    ranked = by_rank(["the building that appeared"], middle_top, rivals, rs)
    assert ranked == "the second building from the west that appeared in the northernmost row"
    assert refers(ranked, middle_top, rivals, rs)
    # the centre house: second row from a side, second in it
    centre = grid[1, 1]
    ranked = by_rank(["the building that appeared"], centre, [h for h in grid.values() if h is not centre], rs)
    assert ranked == "the second building from the west that appeared in the second row from the north"
    assert refers(ranked, centre, [h for h in grid.values() if h is not centre], rs)
    # a wrong row is untrue
    assert not refers("the second building from the west in the southernmost row that appeared", middle_top, rivals, rs)


def test_no_target_expressions_never_deny_a_change_that_was_found() -> None:
    """ "the demolished building" is untrue of a pair where a building was demolished, even one the referring
    rule could not name and dropped."""
    built = _house("b", 10, 10)
    demolished = _house("d", 60, 10).model_copy(update={"change_type": ChangeType.DISAPPEAR, "status": "discarded"})
    assert [a.change_type for a in absent_changes([built], 1.0, 256, 256, "pair")] == [ChangeType.DISAPPEAR]
    assert absent_changes([built], 1.0, 256, 256, "pair", seen=[built, demolished]) == []
    # a field that was paved does not come or go: "the plot of land that was removed" is no change to look for
    paved = _house("p", 120, 10).model_copy(update={"change_type": ChangeType.STATE_CHANGE, "category": "ground"})
    assert absent_changes([paved], 1.0, 256, 256, "pair") == []
    assert [a.category for a in absent_changes([paved, built], 1.0, 256, 256, "pair")] == ["building"]
    # a road that was resurfaced may well be "the stretch of road that was laid": no claim about roads there
    repaved = _house("r", 180, 10).model_copy(update={"change_type": ChangeType.STATE_CHANGE, "category": "road"})
    removed = _house("x", 10, 120).model_copy(update={"change_type": ChangeType.DISAPPEAR, "category": "road"})
    assert [a.category for a in absent_changes([removed], 1.0, 256, 256, "pair")] == ["road"]
    assert absent_changes([removed, repaved], 1.0, 256, 256, "pair") == []
    assert absent_changes([removed], 1.0, 256, 256, "pair", seen=[removed, repaved]) == []


def test_an_object_cut_by_the_image_edge_is_named_along_that_edge() -> None:
    """A house sliver on the eastern edge of a 256 px image, among houses that block every other way to say it:
    one level with it across (no "easternmost"), two level with it but not with each other (no "northernmost",
    no clean row), five south and west of it (too far to count)."""
    image = (256, 256)
    sliver = _house("s", 236, 50, cut_by_border=True)
    narrow = _house("h", 0, 0).model_copy(update={"box": BBox(x0=236, y0=180, x1=246, y1=190)})
    places = (("a", 100, 55), ("g", 160, 45), ("b", 140, 118), ("c", 60, 200), ("d", 20, 160), ("e", 180, 230))
    rivals = [narrow, *(_house(n, x, y) for n, x, y in places)]
    ranked = by_rank(["the new building"], sliver, rivals, Domain.RS, image)
    assert ranked == "the new building at the eastern edge of the image"
    assert refers(ranked, sliver, rivals, Domain.RS, image)
    assert not refers(ranked, narrow, [sliver, *rivals[1:]], Domain.RS, image), "the narrow one does not reach it"
    assert not refers("the new building at the western edge of the image", sliver, rivals, Domain.RS, image)
    # two on the edge: counted along it
    lower = _house("l", 236, 120, cut_by_border=True)
    assert refers(
        "the northernmost new building at the eastern edge of the image", sliver, [lower, *rivals], "rs", image
    )
    assert not refers("the new building at the eastern edge of the image", sliver, [lower, *rivals], "rs", image)


def test_a_house_with_nothing_of_its_own_is_found_beside_a_named_neighbour() -> None:
    """Houses along a curved street: the named one anchors its next neighbour east, which nothing else of its own
    singles out; a reader follows "just east of" to the nearest house level with the anchor, and only when the
    next one is clearly farther and none lies between or a little off level."""
    rs = Domain.RS
    anchor = _house("a", 10, 100, colour="red")
    near = _house("n", 40, 104)  # 10 px gap east of the anchor, level with it
    far = _house("f", 75, 98)  # the next one east
    curve = [_house("c1", 110, 60), _house("c2", 130, 20), _house("c3", 40, 160)]
    houses = [anchor, near, far, *curve]
    anchors = {"the new red-roofed building": anchor}
    rivals = [h for h in houses if h.id not in ("n", "a")]
    related = by_relation(["the building that was built"], near, rivals, anchors, rs)
    assert related == "the new building just east of the new red-roofed building"
    assert refers(related, near, rivals, rs, anchors=anchors)
    # the reader lands on the nearest: untrue of the farther house, untrue without the anchor, wrong side
    assert not refers(related, far, [near, *curve], rs, anchors=anchors)
    assert not refers(related, near, rivals, rs)
    assert not refers("the new building just west of the new red-roofed building", near, rivals, rs, anchors=anchors)
    # a house a little off level and about as near makes "just east of" ambiguous
    rival = _house("r", 42, 118)
    assert not refers(related, near, [*rivals, rival], rs, anchors=anchors)
    assert by_relation(["the new building"], near, [*rivals, rival], anchors, rs) is None
    # too far to be "just" beside: a gap wider than the houses
    lone = _house("l", 60, 100)
    assert by_relation(["the new building"], lone, [h for h in curve], anchors, rs) is None
    # a neighbour whose name holds the target's own words reads in a circle ("the new building just east of
    # the westernmost new building next to the new building"): not used, even where the walk would be true
    circular = {"the westernmost new building next to the new building": anchor}
    assert by_relation(["the building that was built"], near, rivals, circular, rs) is None
    # nor one that names the target the way neighbours do ("the new red-roofed building"), whatever its head
    red = _house("n", 40, 104, colour="red", category_hint="building")
    neighbour_of_red = {"the westernmost new building next to the new red-roofed building": anchor}
    assert by_relation(["the newly built red-roofed building"], red, rivals, neighbour_of_red, rs) is None
    plain = {"the westernmost new building": anchor}
    assert by_relation(["the newly built red-roofed building"], red, rivals, plain, rs) == (
        "the newly built red-roofed building just east of the westernmost new building"
    )


def test_a_house_further_along_a_diagonal_street_is_counted_from_a_named_neighbour() -> None:
    """A row of new houses running south-east from a named one: the third is "the third new building south-east
    of" it, read by stepping from house to house; a house beside the row about as near as the next step makes
    the count ambiguous, and a row that bends away ends the count."""
    rs = Domain.RS
    anchor = _house("a", 10, 10, colour="red")
    row = [_house(f"r{i}", 10 + 28 * i, 10 + 28 * i) for i in range(1, 5)]
    far_off = _house("x", 200, 20)
    anchors = {"the new red-roofed building": anchor}
    houses = [anchor, *row, far_off]
    third = row[2]
    rivals = [h for h in houses if h.id != third.id]
    related = by_relation(["the building that was built"], third, rivals, anchors, rs)
    assert related == "the third new building south-east of the new red-roofed building"
    assert refers(related, third, rivals, rs, anchors=anchors)
    # the words are true of the third only: not of the second or the fourth, nor towards another side
    for other in (row[1], row[3]):
        assert not refers(related, other, [h for h in houses if h.id != other.id], rs, anchors=anchors)
    assert not refers(related.replace("south-east", "south-west"), third, rivals, rs, anchors=anchors)
    first = by_relation(["the new building"], row[0], [h for h in houses if h.id != "r1"], anchors, rs)
    assert first == "the new building just south-east of the new red-roofed building"
    # a house off the row beside the second one: a reader may step onto either, so the count stops there
    beside = _house("b", 78, 52)
    crowded = [*rivals, beside]
    assert not refers(related, third, crowded, rs, anchors=anchors)
    assert by_relation(["the new building"], third, crowded, anchors, rs) is None
    # counted wording is not read into a rank that names a landmark
    assert not is_relational("the second new building from the west north of the pool", rs)
    assert is_relational(related, rs)


def test_a_reader_counts_up_to_the_fifth_house_from_a_named_neighbour() -> None:
    """A long street of new houses east of a named one: the fifth is still counted from it, the sixth is not
    (no reader counts that far at a glance), so it is left to other wording or dropped."""
    rs = Domain.RS
    anchor = _house("a", 10, 10, colour="red")
    street = [_house(f"s{i}", 10 + 30 * i, 10) for i in range(1, 7)]
    houses = [anchor, *street]
    anchors = {"the new red-roofed building": anchor}

    def related(house: Target) -> str | None:
        return by_relation(["the new building"], house, [h for h in houses if h.id != house.id], anchors, rs)

    assert related(street[4]) == "the fifth new building east of the new red-roofed building"
    assert refers(related(street[4]) or "", street[4], [h for h in houses if h.id != "s5"], rs, anchors=anchors)
    assert related(street[5]) is None
    assert not is_relational("the sixth new building east of the new red-roofed building", rs)


def test_the_change_is_said_before_the_noun_after_any_rank() -> None:
    appear = ChangeType.APPEAR
    assert relational_head("the house that was built", appear) == "the new house"
    assert relational_head("the westernmost house that was built", appear) == "the westernmost new house"
    assert (
        relational_head("the seventh grey-roofed building from the north that was built", appear)
        == "the seventh new grey-roofed building from the north"
    )
    assert (
        relational_head("the larger building that was torn down", ChangeType.DISAPPEAR) == "the larger former building"
    )
    assert relational_head("the new house", appear) == "the new house" and relational_head("a house", appear) is None


def _masked(house: Target, size: int = 384, **update: object) -> Target:
    mask = np.zeros((size, size), dtype=bool)
    mask[house.box.y0 : house.box.y1, house.box.x0 : house.box.x1] = True
    return house.model_copy(update={"mask": RLEMask.from_array(mask), **update})


@contextmanager
def _one_pair(tmp_path: Path) -> Iterator[tuple[ImagePair, AgentResources]]:
    """One ingested 384 px generated pair and the agent's resources on it (offline, classical masks)."""
    write_examples(tmp_path / "examples", pairs=1, seed=11, size=384)
    workspace = tmp_path / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        ingest(tmp_path / "examples", catalog, store, IngestOptions())
        yield next(catalog.iter_pairs()), agent_resources(catalog, store, OfflineBackend(), ClassicalMaskEngine())


def test_position_words_hold_among_every_change_a_reader_sees(tmp_path: Path) -> None:
    """Detector mode keeps a budget of triplets per pair, but a reader sees every new house: "the easternmost
    new building" is untrue of a drafted house when one left out for the budget lies further east, and "the
    westernmost" when one beyond the review's reach lies further west. The group holds all the reviewed ones, and
    is not drafted while some were never reviewed."""
    with _one_pair(tmp_path) as (pair, res):
        plain = "the building that appeared"
        west = _masked(_house("w", 60, 150), expressions=["the westernmost building that appeared", plain])
        east = _masked(_house("e", 200, 150), expressions=["the easternmost building that appeared", plain])
        alone = AgentState(pair_id=pair.id, targets=[west, east], proposals="detector", budget=2)
        worded = {t.id: t.expressions for t in nodes.ensure_unique(res, alone)["targets"]}
        assert worded["w"][0] == west.expressions[0] and worded["e"][0] == east.expressions[0]

        left_out = _masked(_house("o", 300, 150), status="discarded", over_budget=True)
        unreviewed = _masked(_house("u", 10, 150), status="pending")
        crowded = alone.model_copy(update={"targets": [west, east, left_out], "unreviewed": [unreviewed]})
        result = {t.id: t for t in nodes.ensure_unique(res, crowded)["targets"]}
        seen = [result["w"], result["e"], left_out, unreviewed]
        assert result["w"].kept and result["e"].kept
        for name, wrong in (("w", "westernmost"), ("e", "easternmost")):
            target = result[name]
            assert target.expressions and not any(wrong in e for e in target.expressions), target.expressions
            rivals = [o for o in seen if o.id != name]
            assert all(refers(e, target, rivals, Domain.RS, (384, 384)) for e in target.expressions)
        # over the budget or never reviewed, never drafted alone
        assert {t.id for t in result.values() if t.kept} == {"w", "e"}

    (group,) = same_kind_groups([west, east], [left_out])
    assert sorted(group.member_ids) == ["e", "o", "w"]
    assert group.mask is not None and group.mask.area == 3 * 20 * 20
    assert same_kind_groups([west, east], [left_out, unreviewed]) == [], "nobody checked the unreviewed one's mask"
    # a trained detector's unreviewed regions are mostly right: the group holds them, flagged for the auditor
    (trained,) = same_kind_groups([west, east], [left_out, unreviewed], unchecked=True)
    assert sorted(trained.member_ids) == ["e", "o", "u", "w"] and trained.uncorrected_members == 1
    assert trained.mask is not None and trained.mask.area == 4 * 20 * 20
    assert same_kind_groups([west], [left_out]) == [], "one drafted house makes no group of its own"


def test_a_group_holds_the_changes_no_expression_could_single_out(tmp_path: Path) -> None:
    """A new house the referring rule could not name is dropped from the single-target triplets, but "the
    buildings that were built" is still all of them: its mask is in the group's, and it is a rival to every
    expression of its kind; a detection the review discarded as no change is neither."""
    with _one_pair(tmp_path) as (pair, res):
        west = _masked(_house("w", 60, 150), expressions=["the westernmost building that appeared"])
        east = _masked(_house("e", 200, 150), expressions=["the easternmost building that appeared"])
        unnamed = _masked(_house("n", 130, 300), status="discarded", unnamed=True)
        false_alarm = _masked(_house("f", 300, 300), status="discarded")
        state = AgentState(pair_id=pair.id, targets=[west, east, unnamed, false_alarm], proposals="labels")
        assert [t.id for t in visible(state.targets, [])] == ["w", "e", "n"]
        extras = [t for t in nodes.compose_extras(res, state)["targets"] if t.member_ids]
    (group,) = extras
    assert sorted(group.member_ids) == ["e", "n", "w"] and group.expressions
    assert group.mask is not None and group.mask.area == 3 * 20 * 20


def test_a_kind_none_of_whose_changes_could_be_named_still_gets_its_group(tmp_path: Path) -> None:
    """On a crowded tile (LEVIR-CD's 104 new houses) the referring rule can name no new house alone: rank words
    stop at the tenth and every house shares every attribute. Each is dropped from the single-target triplets,
    but "the buildings that were built" still holds them all, so the tile's changes reach the auditor; one whose
    correction gave up keeps the group flagged after it was left out. A single unnamed house, or one beside a
    house left out only for the budget, makes no group."""
    houses = [_masked(_house(f"h{i}", 20 + 40 * i, 150)) for i in range(4)]
    houses[1] = houses[1].model_copy(update={"status": "uncorrected"})
    for house in houses[:3]:
        house.leave_out("unnamed")
    houses[3].leave_out("budget")
    assert houses[1].left_uncorrected and not houses[0].left_uncorrected
    assert all(not h.kept for h in houses) and [h.unnamed for h in houses] == [True, True, True, False]
    with _one_pair(tmp_path) as (pair, res):
        state = AgentState(pair_id=pair.id, targets=houses, proposals="labels")
        extras = [t for t in nodes.compose_extras(res, state)["targets"] if t.member_ids]
    (group,) = extras
    assert group.member_ids == ["h0", "h1", "h2", "h3"] and group.expressions
    assert group.uncorrected_members == 1, "the member whose correction gave up is counted"
    assert group.mask is not None and group.mask.area == 4 * 20 * 20
    assert same_kind_groups([], [houses[0]]) == [], "one unnamed house is no group"
    assert same_kind_groups([], [houses[0], houses[3]]) == [], "nor one beside a house left out for the budget"


def _with_mask(target: Target, mask: np.ndarray, **update: object) -> Target:
    return target.model_copy(update={"mask": RLEMask.from_array(mask), **update})


def test_one_object_found_twice_becomes_one_target_and_neighbours_stay_two() -> None:
    """A car found as two pieces (its changed region and a segment of the date that holds it, typed apart) would
    reach the auditor twice under two names: the weaker piece is dropped and its pixels join the stronger one's
    mask. Two houses side by side share no outline and stay two; a car gone and another parked on the same spot
    are two changes; labelled objects are never merged."""
    size = 96
    rim, roof = np.zeros((size, size), bool), np.zeros((size, size), bool)
    # one 10 x 24 car seen as two pieces that share its outline, not its pixels: its rim, open to the east, and
    # the rest of its roof
    rim[40:50, 20:44] = True
    rim[43:47, 30:44] = False
    roof[43:47, 30:44] = True
    strong = _with_mask(_house("strong", 20, 40, rank=0), rim, category="vehicle")
    weak = _with_mask(_house("weak", 30, 43, rank=3), roof)
    beside = np.zeros((size, size), bool)
    beside[40:50, 46:60] = True  # a second car touching the first's box, side by side
    neighbour = _with_mask(_house("beside", 46, 40, rank=1), beside)
    gone = _with_mask(_house("gone", 20, 40, rank=2), rim | roof, change_type=ChangeType.DISAPPEAR)

    kept = nodes.drop_duplicates([weak, neighbour, strong, gone])
    by_id = {t.id: t for t in kept}
    assert by_id["weak"].status == "discarded" and by_id["weak"].duplicate_of == "strong"
    assert by_id["strong"].mask is not None
    assert np.array_equal(by_id["strong"].mask.to_array(), rim | roof)
    # position words read its box: the object is both pieces
    assert by_id["strong"].box == BBox(x0=20, y0=40, x1=50, y1=63)
    assert by_id["beside"].kept and by_id["beside"].duplicate_of is None
    assert by_id["gone"].kept, "a different change at the same place is another triplet"

    labelled = [
        _with_mask(_house(name, 20, 40, labelled=True, rank=rank), mask)
        for name, rank, mask in (("a", 0, rim), ("b", 1, roof))
    ]
    assert all(t.kept for t in nodes.drop_duplicates(labelled)), "labelled objects are distinct by definition"


def test_a_false_position_claim_is_placed_afresh_not_lost() -> None:
    """A model writes "the westernmost ..." of a house with another further west: the rules do not drop the
    target for it, they place it again from its words without the claim, truthfully."""
    west, middle, east = _house("w", 40, 10), _house("m", 80, 200), _house("e", 120, 50)
    houses = [west, middle, east]
    rs = Domain.RS
    assert without_claims("The second grey-roofed building from the west that appeared", rs) == (
        "The grey-roofed building that appeared"
    )
    assert without_claims("the larger new house in the northernmost row", rs) == "the new house"
    assert without_claims("the new house at the eastern edge of the image", rs) == "the new house"
    assert without_claims("the new house", rs) is None, "nothing to take away"
    assert without_claims("the westernmost", rs) is None, "nothing left to say"
    for target, claim in (
        (middle, "the westernmost grey-roofed building that appeared"),
        (east, "the largest building that appeared"),
    ):
        others = [o for o in houses if o is not target]
        assert not refers(claim, target, others, rs)
        placed = by_rank([claim], target, others, rs)
        assert placed is not None and refers(placed, target, others, rs), placed
        assert "grey-roofed" in placed or "grey" not in claim
