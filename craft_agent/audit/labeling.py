"""The audit page's contract: triplet -> Label Studio task, and annotation -> :class:`AuditRecord`.

Pure functions over the data model; nothing here talks to a server. The page itself is
``auditing/labeling_config.xml``, package data of ``craft_agent`` loaded through :mod:`importlib.resources`;
the control names below must match it (a test checks they do).

Masks travel as Label Studio brush RLE (the SDK's ``mask2rle`` / ``decode_rle`` on 0/255 masks, exact both
ways) on the image where the target is visible: the later image for "appear", the earlier one for
"disappear", both for a change of state. An auditor's brush strokes on either image are united into the
triplet's single pair-aligned mask. Points and boxes from the page's smart tools (keypoints and rectangles, in
percent of the image) never count as mask pixels: they are read as :class:`AuditHint` records, which a "needs
fix" verdict hands to the agent (see :mod:`craft_agent.agent.revise`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle

from craft_agent.errors import AuditError
from craft_agent.models import (
    AuditHint,
    AuditRecord,
    AuditRevision,
    BBox,
    ChangeType,
    ImagePair,
    RLEMask,
    Triplet,
    Verdict,
    utc_now,
)

AUDITING_DIR: Traversable = files("craft_agent") / "auditing"
LABEL_CONFIG_PATH = AUDITING_DIR / "labeling_config.xml"

IMAGE_A, IMAGE_B = "image_a", "image_b"
MASK_A, MASK_B = "mask_a", "mask_b"
EXPRESSION, CHANGE_TYPE, VERDICT, COMMENT = "expression", "change_type", "verdict", "comment"
TARGET_VIEW = "target_view"
KEYPOINTS_A, KEYPOINTS_B = "kp_a", "kp_b"
BOXES_A, BOXES_B = "box_a", "box_b"
BRUSH_LABEL = "target"
NO_TARGET_CHOICE = "none"
AUDITOR_VERDICTS = ("accept", "needs_fix", "reject")
"""The verdict choices' aliases on the page."""


def label_config(path: Path | Traversable = LABEL_CONFIG_PATH) -> str:
    """The labeling config XML.

    Args:
        path: the config file; the package's own ``auditing/labeling_config.xml`` by default.

    Raises:
        AuditError: when the file is missing.
    """
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuditError(
            f"cannot read the labeling config {path}: {exc}.",
            hint="reinstall craft-agent, or restore craft_agent/auditing/ from git.",
        ) from exc


def revision_of(triplet: Triplet) -> str:
    """Hash of what the auditor is shown; a different revision means the task must be updated."""
    shown: list[Any] = [
        triplet.expressions,
        list(triplet.mask.size),
        triplet.mask.counts,
        triplet.change_type.value if triplet.change_type else None,
        triplet.category,
        triplet.uncorrected,
    ]
    if triplet.provenance.revisions:
        # the agent's answers to "needs fix" change the page (its guidance) even when the content did not change;
        # left out when there are none, so that tasks pushed before revisions existed keep their hash
        shown.append([[r.audit_id, r.outcome] for r in triplet.provenance.revisions])
    payload = json.dumps(shown, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def target_images(change_type: ChangeType | None) -> tuple[str, ...]:
    """The page's mask controls where a target of this change type is drawn."""
    if change_type is ChangeType.APPEAR:
        return (MASK_B,)
    if change_type is ChangeType.DISAPPEAR:
        return (MASK_A,)
    if change_type is ChangeType.STATE_CHANGE:
        return (MASK_A, MASK_B)
    return ()


def guidance(triplet: Triplet) -> str:
    """One line above the images telling the auditor what kind of triplet this is."""
    if triplet.is_no_target:
        text = (
            "NO-TARGET expression: it describes a change that did NOT happen here, so there is no mask. "
            "Accept if nothing in the images matches it; reject if something does."
        )
    else:
        where = {
            ChangeType.APPEAR: "on the later image (B)",
            ChangeType.DISAPPEAR: "on the earlier image (A)",
            ChangeType.STATE_CHANGE: "on both images",
        }.get(triplet.change_type or ChangeType.APPEAR, "")
        objects = len(triplet.candidate_ids)
        kind = f"MULTI-TARGET expression ({objects} objects in one mask)" if objects > 1 else "Single target"
        text = f"{kind}, drawn {where}. Check the expression names exactly what the mask covers."
    if triplet.uncorrected:
        text += " The agent could not confirm this mask: check its outline closely."
    if triplet.provenance.revisions:
        text += " " + revision_note(triplet.provenance.revisions[-1], triplet.revision)
    return text


def revision_note(answer: AuditRevision, revision: int) -> str:
    """What the page says about the agent's latest answer to a "needs fix": the auditor's comment, kept, and
    what the agent did with it."""
    said = f'"{answer.comment}"' if answer.comment else "(no comment)"
    if answer.outcome == "left_with_auditors":
        return (
            f"Revised after: {said}. The agent has made its {revision} revision(s) and will not revise this "
            "triplet again: it stays with the auditors (fix it on the page, or reject it)."
        )
    marks = f" and {len(answer.hints)} point(s)/box(es)" if answer.hints else ""
    what = ", ".join(answer.changed) if answer.changed else "nothing it could act on"
    why = f" ({answer.reason.rstrip('.')})" if answer.reason else ""
    return f"Revised after: {said}{marks}. Revision {revision} by the agent, which changed: {what}{why}."


def _brush_result(control: str, mask: np.ndarray) -> dict[str, Any]:
    height, width = mask.shape
    return {
        "id": f"craft-{control}",
        "from_name": control,
        "to_name": IMAGE_A if control == MASK_A else IMAGE_B,
        "type": "brushlabels",
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask2rle(mask), "brushlabels": [BRUSH_LABEL]},
    }


def prediction_result(triplet: Triplet) -> list[dict[str, Any]]:
    """The proposal as a Label Studio prediction result: mask(s), expressions and change type."""
    result: list[dict[str, Any]] = []
    if not triplet.is_no_target:
        pixels = (triplet.mask.to_array() > 0).astype(np.uint8) * 255
        result += [_brush_result(control, pixels) for control in target_images(triplet.change_type)]
    result.append(
        {
            "id": "craft-expression",
            "from_name": EXPRESSION,
            "to_name": IMAGE_B,
            "type": "textarea",
            "value": {"text": list(triplet.expressions)},
        }
    )
    change = triplet.change_type.value if triplet.change_type else NO_TARGET_CHOICE
    result.append(
        {
            "id": "craft-change-type",
            "from_name": CHANGE_TYPE,
            "to_name": IMAGE_B,
            "type": "choices",
            "value": {"choices": [change]},
        }
    )
    return result


def hint_results(hints: Sequence[AuditHint], size: tuple[int, int]) -> list[dict[str, Any]]:
    """The smart tools' result items for ``hints`` on a pair of ``size`` = (height, width), as the page writes
    them: keypoints and rectangles in percent of the image, a point's sign in ``is_positive``."""
    height, width = size
    items: list[dict[str, Any]] = []
    for number, hint in enumerate(hints):
        image = IMAGE_A if hint.date == "pre" else IMAGE_B
        item: dict[str, Any] = {
            "id": f"hint-{number}",
            "to_name": image,
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
            "origin": "manual",
        }
        if hint.box is not None:
            box = hint.box
            item |= {
                "from_name": BOXES_A if image == IMAGE_A else BOXES_B,
                "type": "rectanglelabels",
                "value": {
                    "x": 100 * box.x0 / width,
                    "y": 100 * box.y0 / height,
                    "width": 100 * box.width / width,
                    "height": 100 * box.height / height,
                    "rotation": 0,
                    "rectanglelabels": [BRUSH_LABEL],
                },
            }
        else:
            assert hint.point is not None  # by AuditHint's validator
            x, y = hint.point
            item |= {
                "from_name": KEYPOINTS_A if image == IMAGE_A else KEYPOINTS_B,
                "type": "keypointlabels",
                "is_positive": hint.positive,
                # the pixel's centre, in percent of the image
                "value": {
                    "x": 100 * (x + 0.5) / width,
                    "y": 100 * (y + 0.5) / height,
                    "width": 0.5,
                    "keypointlabels": [BRUSH_LABEL],
                },
            }
        items.append(item)
    return items


_SNAP = 1e-6
"""Pixels: how close to a pixel edge a percentage converted back counts as on it."""


def hints_from_results(results: Sequence[Mapping[str, Any]], size: tuple[int, int]) -> list[AuditHint]:
    """The points and boxes of an annotation, in the pixels of a pair of ``size`` = (height, width).

    Keypoints and rectangles are in percent of the image, so they are scaled to the pair whatever size the
    page showed. A keypoint without ``is_positive`` (placed outside smart mode) marks the target.

    Raises:
        ValueError: when a point or box lies outside the image or has no area.
    """
    height, width = size
    hints: list[AuditHint] = []
    for item in results:
        kind = item.get("type")
        if kind not in ("keypointlabels", "rectanglelabels"):
            continue
        date = "pre" if item.get("to_name") == IMAGE_A else "post"
        value = item.get("value") or {}
        try:
            x, y = float(value["x"]) * width / 100, float(value["y"]) * height / 100
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{kind} region {item.get('id')} has no x and y ({value!r})") from exc
        if not (0 <= x <= width and 0 <= y <= height):
            raise ValueError(f"{kind} region {item.get('id')} lies outside the {width}x{height} image")
        if kind == "keypointlabels":
            point = (min(int(x), width - 1), min(int(y), height - 1))
            positive = item.get("is_positive")
            hints.append(AuditHint(date=date, kind="point", positive=positive is not False, point=point))
            continue
        # a box drawn on pixel edges comes back within rounding of them: snap before taking whole pixels
        x1 = min(width, math.ceil(x + float(value.get("width", 0)) * width / 100 - _SNAP))
        y1 = min(height, math.ceil(y + float(value.get("height", 0)) * height / 100 - _SNAP))
        x0, y0 = min(math.floor(x + _SNAP), width - 1), min(math.floor(y + _SNAP), height - 1)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"rectangle region {item.get('id')} has no area")
        hints.append(AuditHint(date=date, kind="box", box=BBox(x0=x0, y0=y0, x1=x1, y1=y1)))
    return hints


def submitted_result(
    triplet: Triplet,
    verdict: str,
    expressions: list[str] | None = None,
    painted: Mapping[str, np.ndarray] | None = None,
    change_type: str | None = None,
    comment: str | None = None,
    hints: Sequence[AuditHint] = (),
) -> list[dict[str, Any]]:
    """The result an auditor's browser submits for ``triplet``'s task: the proposal as the page shows it,
    with the given edits, plus the verdict. Benchmarks and tests use it to audit through the API.

    Args:
        verdict: one of :data:`AUDITOR_VERDICTS`.
        expressions: the edited expressions; None keeps the proposed ones.
        painted: brush masks by control (:data:`MASK_A`, :data:`MASK_B`) replacing the proposed ones;
            an empty mapping erases the mask; None keeps it.
        change_type: the chosen change type alias; None keeps the proposed one.
        hints: points and boxes placed with the smart tools (see :func:`hint_results`).
    """
    result = prediction_result(triplet)
    if painted is not None:
        result = [item for item in result if item["type"] != "brushlabels"]
        result += [_brush_result(control, mask.astype(np.uint8) * 255) for control, mask in painted.items()]
    for item in result:
        if item["from_name"] == EXPRESSION and expressions is not None:
            item["value"] = {"text": list(expressions)}
        if item["from_name"] == CHANGE_TYPE and change_type is not None:
            item["value"] = {"choices": [change_type]}
    result.append({"from_name": VERDICT, "to_name": IMAGE_B, "type": "choices", "value": {"choices": [verdict]}})
    if comment:
        result.append({"from_name": COMMENT, "to_name": IMAGE_B, "type": "textarea", "value": {"text": [comment]}})
    return result + hint_results(hints, triplet.mask.size)


def task_for(
    triplet: Triplet,
    pair: ImagePair,
    image_a: str,
    image_b: str,
    model_version: str,
    target_view: Sequence[str] = (),
) -> dict[str, Any]:
    """The Label Studio task (data plus one prediction) auditing ``triplet``.

    Args:
        image_a: URL of the earlier image as the server should fetch it (local-files path or data URI).
        image_b: URL of the later image.
        model_version: shown in Label Studio beside the prediction (with the revision, once revised).
        target_view: URLs of the zoomed view of the target, one per fill opacity (:mod:`craft_agent.audit.views`).
    """
    if triplet.revision:
        model_version = f"{model_version} revision {triplet.revision}"
    return {
        "data": {
            IMAGE_A: image_a,
            IMAGE_B: image_b,
            TARGET_VIEW: list(target_view),
            "guidance": guidance(triplet),
            "triplet_id": triplet.id,
            "revision": revision_of(triplet),
            "pair_id": pair.id,
            "pair_name": pair.name,
            "domain": pair.domain.value,
            "change_type": triplet.change_type.value if triplet.change_type else NO_TARGET_CHOICE,
            "category": triplet.category or "",
            "expression": " | ".join(triplet.expressions),
        },
        "predictions": [
            {
                "model_version": model_version,
                "score": 0.0 if triplet.uncorrected else 1.0,
                "result": prediction_result(triplet),
            }
        ],
    }


def _choice(results: Sequence[Mapping[str, Any]], control: str) -> str | None:
    for item in results:
        if item.get("from_name") == control and item.get("type") == "choices":
            choices = item.get("value", {}).get("choices") or []
            return str(choices[0]) if choices else None
    return None


def _texts(results: Sequence[Mapping[str, Any]], control: str) -> list[str] | None:
    found: list[str] | None = None
    for item in results:
        if item.get("from_name") == control and item.get("type") == "textarea":
            found = (found or []) + [str(t).strip() for t in item.get("value", {}).get("text") or []]
    return [t for t in found if t] if found is not None else None


def mask_from_results(results: Sequence[Mapping[str, Any]], size: tuple[int, int]) -> RLEMask | None:
    """Union of every brush region in an annotation, on the pair's grid; None when it has no brush region.

    Only brush regions count: keypoints and rectangles are hints (:func:`hints_from_results`), not pixels.

    Raises:
        ValueError: when a region was drawn on an image of another size than the pair.
    """
    height, width = size
    union: np.ndarray | None = None
    for item in results:
        if item.get("type") != "brushlabels":
            continue
        value = item.get("value", {})
        if value.get("format") != "rle" or "rle" not in value:
            raise ValueError(f"brush region {item.get('id')} is not in RLE format")
        drawn = (int(item.get("original_height", 0)), int(item.get("original_width", 0)))
        if drawn != (height, width):
            raise ValueError(f"brush region drawn on a {drawn[1]}x{drawn[0]} image, the pair is {width}x{height}")
        rgba = np.asarray(decode_rle(value["rle"]), dtype=np.uint8)
        if rgba.size != height * width * 4:
            expected = height * width * 4
            raise ValueError(f"brush region {item.get('id')} decodes to {rgba.size} values, expected {expected}")
        layer = rgba.reshape(height, width, 4)[:, :, 3] > 127
        union = layer if union is None else union | layer
    return None if union is None else RLEMask.from_array(union)


def _parse_time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return utc_now()


def audit_record(
    annotation: Mapping[str, Any], triplet: Triplet, record_id: str, auditor: str, task_id: str | None = None
) -> AuditRecord:
    """The :class:`AuditRecord` for one submitted annotation of ``triplet``'s task.

    Edits are judged against what the page showed (the triplet's expressions, mask and change type); an
    "accept" with any edit becomes ``fix``, a "needs fix" stays ``needs_fix`` (it is not exported) whatever
    was edited. Points and boxes placed with the smart tools become the record's ``hints``.

    Raises:
        AuditError: when the annotation has no verdict, a mask that does not fit the pair, or a point or box
            outside the image.
    """
    results = annotation.get("result") or []
    chosen = _choice(results, VERDICT)
    if chosen not in AUDITOR_VERDICTS:
        raise AuditError(
            f"annotation {annotation.get('id')} of triplet {triplet.id} has no verdict ({chosen!r}).",
            hint="open the task in Label Studio, choose accept, needs fix or reject, and update it.",
        )
    texts = _texts(results, EXPRESSION)
    expressions = texts if texts and texts != triplet.expressions else None
    try:
        drawn = mask_from_results(results, triplet.mask.size)
        hints = hints_from_results(results, triplet.mask.size)
    except ValueError as exc:
        raise AuditError(
            f"annotation {annotation.get('id')} of triplet {triplet.id}: {exc}.",
            hint="repaint the mask on the task's own images in Label Studio.",
        ) from exc
    if drawn is None:
        # No brush region left: for a no-target triplet that is what was shown; otherwise the auditor erased it.
        drawn = RLEMask.empty(*triplet.mask.size) if not triplet.is_no_target else None
    mask = drawn if drawn is not None and drawn.counts != triplet.mask.counts else None
    change_choice = _choice(results, CHANGE_TYPE)
    known = {c.value for c in ChangeType} | {NO_TARGET_CHOICE}
    if change_choice is not None and change_choice not in known:
        raise AuditError(
            f"annotation {annotation.get('id')} of triplet {triplet.id} has an unknown change type {change_choice!r}.",
            hint=f"the labeling config's change_type aliases must be {sorted(known)}; push again to update it.",
        )
    shown_type = triplet.change_type.value if triplet.change_type else NO_TARGET_CHOICE
    change_type_edited = change_choice is not None and change_choice != shown_type
    change_type = (
        None if not change_type_edited or change_choice == NO_TARGET_CHOICE else ChangeType(str(change_choice))
    )
    edited = expressions is not None or mask is not None or change_type_edited
    verdict = {
        "accept": Verdict.FIX if edited else Verdict.ACCEPT,
        "needs_fix": Verdict.NEEDS_FIX,
        "reject": Verdict.REJECT,
    }[chosen]
    comments = _texts(results, COMMENT)
    lead_time = annotation.get("lead_time")
    return AuditRecord(
        id=record_id,
        triplet_id=triplet.id,
        verdict=verdict,
        expressions=expressions,
        mask=mask,
        change_type=change_type if change_type_edited else None,
        change_type_edited=change_type_edited,
        comment="\n".join(comments) if comments else None,
        hints=hints,
        auditor=auditor,
        lead_time_s=float(lead_time) if isinstance(lead_time, int | float) and lead_time >= 0 else None,
        backend="label_studio",
        task_id=task_id,
        created_at=_parse_time(annotation.get("created_at")),
        updated_at=_parse_time(annotation.get("updated_at")),
    )
