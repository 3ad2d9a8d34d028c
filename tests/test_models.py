from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from craft_agent.errors import IllegalTransitionError
from craft_agent.grid import all_cell_names, cell_name, position_of_box
from craft_agent.models import (
    TRANSITIONS,
    BBox,
    ChangeType,
    ImagePair,
    PairSource,
    RLEMask,
    StoredImage,
    Triplet,
    TripletState,
    Verdict,
    json_schemas,
    triplet_id,
)

DOCS_SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "schema"


def test_change_type_codes_follow_mtrefseg() -> None:
    assert [t.code for t in ChangeType] == [0, 1, 2]
    assert ChangeType.from_code(1) is ChangeType.DISAPPEAR
    with pytest.raises(ValueError, match="unknown MTRefSeg change-type code 3"):
        ChangeType.from_code(3)


def test_rle_round_trip_multi_object_and_empty() -> None:
    mask = np.zeros((40, 30), dtype=bool)
    mask[2:5, 3:9] = True
    mask[20:30, 10:12] = True
    rle = RLEMask.from_array(mask)
    assert rle.size == (40, 30)
    assert np.array_equal(rle.to_array(), mask)
    assert rle.area == 18 + 20
    assert rle.bbox() == BBox(x0=3, y0=2, x1=12, y1=30)
    empty = RLEMask.empty(40, 30)
    assert empty.is_empty and empty.area == 0 and empty.bbox() is None
    # survives JSON (the catalog stores records as JSON)
    assert RLEMask.model_validate_json(rle.model_dump_json()) == rle


def test_rle_from_crop_equals_from_full_array() -> None:
    crop = np.zeros((5, 7), dtype=bool)
    crop[1:4, 2:6] = True
    full = np.zeros((30, 40), dtype=bool)
    full[10:15, 20:27] = crop
    assert RLEMask.from_crop(crop, 20, 10, 30, 40) == RLEMask.from_array(full)


def test_rle_union_crop_and_iou() -> None:
    a = np.zeros((10, 10), dtype=bool)
    a[0:4, 0:4] = True
    b = np.zeros((10, 10), dtype=bool)
    b[2:6, 2:6] = True
    union = RLEMask.union([RLEMask.from_array(a), RLEMask.from_array(b)])
    assert union.area == 16 + 16 - 4
    assert RLEMask.from_array(a).iou(RLEMask.from_array(b)) == pytest.approx(4 / 28, abs=1e-6)
    assert RLEMask.empty(10, 10).iou(RLEMask.empty(10, 10)) == 1.0
    assert RLEMask.from_array(a).crop(2, 2, 4, 4).area == 4
    with pytest.raises(ValueError, match="different sizes"):
        RLEMask.union([RLEMask.empty(10, 10), RLEMask.empty(5, 5)])


def test_bbox_refuses_empty_box() -> None:
    with pytest.raises(ValidationError, match="no area"):
        BBox(x0=5, y0=5, x1=5, y1=9)


def _pair(mask_size: tuple[int, int] = (8, 8)) -> ImagePair:
    image = StoredImage(sha256="a" * 64, path="images/aa/x.png", width=8, height=8)
    return ImagePair(
        id="0123456789abcdef",
        name="p",
        domain="rs",
        width=8,
        height=8,
        pre=image,
        post=image,
        source=PairSource(root="src", layout="folders", pre=["A/p.png"], post=["B/p.png"], name="p"),
        group_id="g",
        gt_mask=RLEMask.empty(*mask_size),
    )


def test_pair_refuses_mask_of_other_size() -> None:
    assert _pair().gt_mask is not None
    with pytest.raises(ValidationError, match="does not match the pair"):
        _pair(mask_size=(4, 4))


def test_state_machine_allows_only_the_documented_moves() -> None:
    mask = RLEMask.empty(4, 4)
    triplet = Triplet(
        id="t1", pair_id="p", mask=mask, expressions=["the pond that dried up"], change_type=ChangeType.DISAPPEAR
    )
    assert triplet.is_no_target
    queued = triplet.moved_to(TripletState.QUEUED_FOR_AUDIT)
    assert queued.state is TripletState.QUEUED_FOR_AUDIT
    assert queued.moved_to(Verdict.FIX.resulting_state).moved_to(TripletState.EXPORTED).state is TripletState.EXPORTED
    with pytest.raises(IllegalTransitionError, match="cannot move from drafted to accepted"):
        triplet.moved_to(TripletState.ACCEPTED)
    rejected = queued.moved_to(TripletState.REJECTED)
    with pytest.raises(IllegalTransitionError, match="cannot move from rejected to exported"):
        rejected.moved_to(TripletState.EXPORTED)
    exported = queued.moved_to(TripletState.ACCEPTED).moved_to(TripletState.EXPORTED)
    with pytest.raises(IllegalTransitionError, match="final state"):
        exported.moved_to(TripletState.REJECTED)
    # every state is in the table, and nothing but an audit verdict leads out of the queue
    assert set(TRANSITIONS) == set(TripletState)
    assert TRANSITIONS[TripletState.QUEUED_FOR_AUDIT] | {TripletState.QUEUED_FOR_AUDIT} == {
        v.resulting_state for v in Verdict
    }


def test_triplet_refuses_blank_expressions() -> None:
    with pytest.raises(ValidationError, match="blank"):
        Triplet(id="t", pair_id="p", mask=RLEMask.empty(2, 2), expressions=["  "], change_type=None)


def test_triplet_id_is_stable_and_content_sensitive() -> None:
    mask = RLEMask.from_array(np.eye(6, dtype=bool))
    first = triplet_id("pair", mask, ChangeType.APPEAR, "building")
    assert first == triplet_id("pair", mask, ChangeType.APPEAR, "building")
    assert first != triplet_id("pair", mask, ChangeType.DISAPPEAR, "building")
    assert first != triplet_id("pair", RLEMask.empty(6, 6), ChangeType.APPEAR, "building")


def test_grid_names() -> None:
    assert all_cell_names() == [
        "top-left",
        "top-center",
        "top-right",
        "mid-left",
        "center",
        "mid-right",
        "bottom-left",
        "bottom-center",
        "bottom-right",
    ]
    assert position_of_box(400, 200, 500, 300, 512, 512) == "mid-right"
    assert cell_name(0, 0, 1, 1) == "whole image"
    with pytest.raises(ValueError, match="outside"):
        cell_name(3, 0)


def test_published_json_schemas_are_up_to_date() -> None:
    """docs/schema is generated by `make schema`; a model change without regenerating fails here."""
    for name, schema in json_schemas().items():
        path = DOCS_SCHEMA / f"{name}.schema.json"
        assert path.is_file(), f"{path} is missing: run `make schema`"
        assert json.loads(path.read_text()) == json.loads(json.dumps(schema)), f"{path} is stale: run `make schema`"
