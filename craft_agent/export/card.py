"""The dataset card: ``README.md`` at the export's root, a Hugging Face dataset card.

Its YAML front matter gives the licence, task, size and tags and, when Parquet was exported, ``configs``
naming each split's Parquet shards, so ``datasets.load_dataset(EXPORT_DIR)`` loads those splits instead of
taking the folder for an image folder. The text gives the counts, the audit's rates, warnings (an empty
split), a few samples drawn as PNGs, plots, the licence and provenance. Pictures go under ``card/``
(matplotlib, Agg backend, no timestamps: byte-stable).
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from craft_agent.export.samples import SPLITS, ExportSample, Selection, SplitConfig
from craft_agent.formats.base import ImageSource

SAMPLE_PREVIEWS = 4
"""Samples drawn in the card: the first of each change type (and a no-target one) first, by split and pair."""
PREVIEW_SIDE = 256
"""Longest side of a preview image, in pixels."""
DOMAIN_TAGS = {"rs": "remote-sensing", "ns": "street-level"}


def count_of(number: int, noun: str, plural: str | None = None) -> str:
    """``"1 sample"``, ``"2 samples"``: the number and the noun in the right number."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def split_warnings(selection: Selection, splits: SplitConfig) -> list[str]:
    """A warning for each split that was meant to get samples (a ratio above 0) but got none."""
    groups = len({pair.group_id for pair in selection.pairs.values()})
    warnings = []
    for split, ratio in zip(SPLITS, splits.ratios, strict=True):
        if ratio > 0 and not any(s.split == split for s in selection.samples):
            warnings.append(
                f"the {split} split is empty: none of the export's {count_of(groups, 'scene group')} fell into it "
                f"(ratio {ratio:g}, seed {splits.seed}). Splits go by scene group; add data, or change the "
                "ratios (--ratios) or the seed (--seed)."
            )
    return warnings


def _size_category(samples: int) -> str:
    """Hugging Face's ``size_categories`` bucket of a dataset of ``samples`` rows."""
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if samples < bound:
            return name
    return "1M<n<10M" if samples < 10_000_000 else "n>10M"


def _license_id(text: str) -> str:
    """The hub's ``license`` field: an identifier as given (``CC-BY-4.0`` -> ``cc-by-4.0``), ``unknown`` when
    none was set, ``other`` for free text (the card's text states it)."""
    if text.startswith("unspecified"):
        return "unknown"
    return text.lower() if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+-]*", text) else "other"


def _front_matter(manifest: dict[str, Any]) -> str:
    counts = manifest["counts"]
    card: dict[str, Any] = {
        "pretty_name": manifest["name"],
        "license": _license_id(manifest["license"]),
        "task_categories": ["image-segmentation"],
        "size_categories": [_size_category(counts["samples"])],
        "tags": [
            "referring-segmentation",
            "change-detection",
            "multi-temporal",
            *(DOMAIN_TAGS.get(domain, domain) for domain in counts["by_domain"]),
            *(["unaudited-preview"] if manifest["unaudited_preview"] else []),
        ],
    }
    if "parquet" in manifest["formats"]:
        card["configs"] = [
            {
                "config_name": "default",
                "data_files": [
                    {"split": split, "path": f"parquet/{split}-*.parquet"}
                    for split in SPLITS
                    if counts["pairs_by_split"][split]
                ],
            }
        ]
    text = yaml.safe_dump(card, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
    return f"---\n{text}---\n"


def _table(title: str, counts: dict[str, dict[str, int]]) -> str:
    keys = sorted({k for row in counts.values() for k in row})
    lines = [f"| {title} | " + " | ".join(keys) + " | total |", "|---|" + "---|" * (len(keys) + 1)]
    for split, row in counts.items():
        lines.append(f"| {split} | " + " | ".join(str(row.get(k, 0)) for k in keys) + f" | {sum(row.values())} |")
    return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plots(selection: Selection, manifest: dict[str, Any], folder: Path) -> list[str]:
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    words = [len(e.split()) for s in selection.samples for e in s.expressions]
    areas = [s.mask.area / (s.mask.size[0] * s.mask.size[1]) for s in selection.samples if not s.is_no_target]
    audit = manifest["audit"]
    outcomes = {
        "accepted": audit["accepted"],
        "fixed": audit["fixed"],
        "rejected": audit["rejected"],
        "needs fix": audit["needs_fix"],
        "awaiting": audit["awaiting_audit"],
    }
    made = []

    def save(name: str, draw: Any) -> None:
        figure, axis = plt.subplots(figsize=(5, 3), dpi=100)
        draw(axis)
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))  # every plot counts whole things
        figure.tight_layout()
        figure.savefig(folder / f"{name}.png", metadata={"Software": None})
        plt.close(figure)
        made.append(f"card/{name}.png")

    def lengths(axis: Any) -> None:
        axis.hist(words, bins=range(0, max(words, default=1) + 2), color="#3b6ea8")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set(xlabel="words per expression", ylabel="expressions")

    def mask_areas(axis: Any) -> None:
        axis.hist([100 * a for a in areas], bins=20, color="#a83b3b")
        axis.set(xlabel="mask area (% of the image)", ylabel="targets")

    def audit_outcomes(axis: Any) -> None:
        axis.bar(list(outcomes), list(outcomes.values()), color="#3ba86e")
        axis.set(ylabel="triplets", title="audit outcome (accepted and fixed are exported)")

    save("expression_length", lengths)
    save("mask_area", mask_areas)
    save("audit", audit_outcomes)
    return made


def _preview_choice(samples: list[ExportSample]) -> list[ExportSample]:
    """Up to :data:`SAMPLE_PREVIEWS` samples: one per change type (no target included) first, then the next."""
    first_of_kind: dict[str, ExportSample] = {}
    for sample in samples:
        first_of_kind.setdefault("no target" if sample.is_no_target else sample.change_type or "-", sample)
    chosen = list(first_of_kind.values())[:SAMPLE_PREVIEWS]
    taken = {s.sample_id for s in chosen}
    for sample in samples:
        if len(chosen) >= SAMPLE_PREVIEWS:
            break
        if sample.sample_id not in taken:
            chosen.append(sample)
    return chosen


def _thumbnail(png: bytes, outline: np.ndarray) -> np.ndarray:
    """The image as RGB, its longest side at most :data:`PREVIEW_SIDE`, with the mask's outline drawn."""
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:  # the store hash-checked the bytes: only a PNG OpenCV cannot read gets here
        raise ValueError("OpenCV could not decode a stored image for the card's sample previews")
    image = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    scale = min(1.0, PREVIEW_SIDE / max(image.shape[:2]))
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(outline.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return cv2.drawContours(image, contours, -1, (255, 220, 0), 2)


def _previews(selection: Selection, images: ImageSource, folder: Path) -> list[tuple[str, ExportSample]]:
    """Draw the chosen samples (both dates, the mask outlined, the expression) as ``card/sample-N.png``."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for number, sample in enumerate(_preview_choice(selection.samples), start=1):
        pre, post = images.pair_png(sample.pair_id)
        mask = sample.mask.to_array() > 0
        figure, axes = plt.subplots(1, 2, figsize=(6, 3.6), dpi=80)
        for axis, png, title in ((axes[0], pre, "earlier"), (axes[1], post, "later")):
            axis.imshow(_thumbnail(png, mask))
            axis.set_title(title, fontsize=9)
            axis.axis("off")
        kind = "no target" if sample.is_no_target else sample.change_type or "change"
        caption = textwrap.fill(f"{sample.expressions[0]} ({kind})", width=70).replace("$", r"\$")
        figure.suptitle(caption, fontsize=9)
        figure.tight_layout()
        name = f"sample-{number}.png"
        figure.savefig(folder / name, metadata={"Software": None})
        plt.close(figure)
        made.append((f"card/{name}", sample))
    return made


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f} %"


def _audit_text(audit: dict[str, Any]) -> str:
    waiting = count_of(audit["awaiting_audit"], "triplet")
    if not audit["audited"]:
        return f"No triplet of this export's domain was audited yet ({waiting} waiting)."
    return (
        f"Of the {count_of(audit['audited'], 'triplet')} of this export's domain that an auditor decided on, "
        f"{audit['accepted']} accepted, {audit['fixed']} fixed by the auditor ({_percent(audit['fix_rate'])}), "
        f"{audit['rejected']} rejected (rejection rate {_percent(audit['rejection_rate'])}) and "
        f"{audit['needs_fix']} marked as needing a fix (needs-fix rate {_percent(audit['needs_fix_rate'])}); "
        f"{waiting} still {'waits' if audit['awaiting_audit'] == 1 else 'wait'} for an audit. Only accepted and "
        "fixed triplets are exported."
    )


def _loading_text(manifest: dict[str, Any], present: list[str]) -> str:
    if "parquet" in manifest["formats"]:
        return (
            f'`datasets.load_dataset("path/to/this/folder")` loads the Parquet shards ({", ".join(present)}): one '
            "row per image pair, `image_a` (earlier) and `image_b` (later) decode to PIL images, `samples` holds "
            "each target's expressions and its mask as COCO RLE (`mask_size`, `mask_counts`; decode with "
            "pycocotools). `craft_agent.data.open_dataset(folder, fmt)` reads any format of it for PyTorch."
        )
    return (
        f"This export holds only {', '.join(manifest['formats'])}: no Parquet shards, so `datasets.load_dataset` "
        "has nothing to load here; read it with `craft_agent.data.open_dataset(folder, fmt)`, or export again "
        "with `--format parquet` as well."
    )


def write_card(selection: Selection, images: ImageSource, root: Path, manifest: dict[str, Any]) -> None:
    """Write ``README.md``, its plots and its sample previews into the export folder ``root``.

    ``manifest`` must hold everything but ``files``: name, version, licence, formats, config, counts,
    ``audit`` (:class:`~craft_agent.export.samples.AuditRates` as a dict), ``warnings`` and provenance.
    """
    plots = _plots(selection, manifest, root / "card")
    previews = _previews(selection, images, root / "card")
    by = {
        name: {
            split: dict(sorted(Counter(key(s) for s in selection.samples if s.split == split).items()))
            for split in SPLITS
            if any(s.split == split for s in selection.samples)
        }
        for name, key in (
            ("domain", lambda s: s.domain),
            ("change type", lambda s: s.change_type or "no target"),
            ("category", lambda s: s.category or "-"),
        )
    }
    counts = manifest["counts"]
    present = [split for split in SPLITS if counts["samples_by_split"][split]]
    by_split = ", ".join(f"{counts['samples_by_split'][split]} {split}" for split in SPLITS)
    auditors = Counter(s.audit.auditor for s in selection.samples if s.audit.auditor)
    edited = Counter(part for s in selection.samples for part in s.audit.edited)
    edited_samples = sum(1 for s in selection.samples if s.audit.edited)
    preview = manifest["unaudited_preview"]
    lines = [
        _front_matter(manifest),
        f"# {manifest['name']} (version {manifest['dataset_version']})",
        "",
        "**UNAUDITED PREVIEW: these samples were not all checked by people; do not train or evaluate on it.**"
        if preview
        else "Every sample below was accepted (or fixed) by a human auditor in Label Studio.",
        "",
        *(f"> **Warning:** {warning}\n" for warning in manifest["warnings"]),
        "A Multi-temporal Referring Segmentation dataset made with CRAFT-Agent: each sample is a pair of images of "
        "one place at two times, referring expressions of one change, and the change's mask (empty for a "
        "no-target expression).",
        "",
        f"- Licence: {manifest['license']}",
        f"- Formats: {', '.join(manifest['formats'])}",
        f"- {count_of(counts['samples'], 'sample')} on {count_of(counts['pairs'], 'pair')} "
        f"({by_split}); splits by scene "
        f"group (seed {manifest['config']['split_seed']}, ratios {manifest['config']['split_ratios']}), "
        f"domain {manifest['config']['domain']}",
        f"- Made by craft-agent {manifest['craft_agent_version']}; file checksums in `manifest.json` "
        "(check with `craft-agent validate`).",
        "",
        "## Loading",
        "",
        _loading_text(manifest, present),
        "",
        "## Samples",
        "",
        "| preview | expressions | change type | category | split |",
        "|---|---|---|---|---|",
        *(
            f"| ![sample {number}]({path}) | {'<br>'.join(_cell(e) for e in sample.expressions)} | "
            f"{sample.change_type if not sample.is_no_target else 'no target'} | {sample.category or '-'} | "
            f"{sample.split} |"
            for number, (path, sample) in enumerate(previews, start=1)
        ),
        "",
        "## Counts",
        "",
        _table("split / domain", by["domain"]),
        "",
        _table("split / change type", by["change type"]),
        "",
        _table("split / category", by["category"]),
        "",
        "## Audit",
        "",
        _audit_text(manifest["audit"]),
        "",
        f"Exported samples come from {count_of(len(auditors), 'auditor')}; "
        f"{count_of(edited_samples, 'sample')} {'was' if edited_samples == 1 else 'were'} edited by the auditor "
        f"({', '.join(f'{n} {k}' for k, n in sorted(edited.items())) or 'none'}).",
        "",
        "![audit outcomes](card/audit.png)",
        "",
        "## Expressions and masks",
        "",
        "![expression length](card/expression_length.png) ![mask area](card/mask_area.png)",
        "",
        "## Provenance",
        "",
    ]
    for key, values in manifest["provenance"].items():
        lines.append(f"- {key}: {', '.join(f'{k} ({v})' for k, v in values.items()) or '-'}")
    lines += ["", f"Plots: {', '.join(plots)}; sample previews: {', '.join(p for p, _ in previews)}.", ""]
    (root / "README.md").write_text("\n".join(lines), encoding="utf-8")
