"""The dataset card: ``README.md`` at the export's root with counts, audit statistics, plots, licence and
provenance. Plots are matplotlib PNGs under ``card/`` (Agg backend, no timestamps: byte-stable)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from craft_agent.export.samples import SPLITS, Selection


def _table(title: str, counts: dict[str, dict[str, int]]) -> str:
    keys = sorted({k for row in counts.values() for k in row})
    lines = [f"| {title} | " + " | ".join(keys) + " | total |", "|---|" + "---|" * (len(keys) + 1)]
    for split, row in counts.items():
        lines.append(f"| {split} | " + " | ".join(str(row.get(k, 0)) for k in keys) + f" | {sum(row.values())} |")
    return "\n".join(lines)


def _plots(selection: Selection, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"Software": None}
    words = [len(e.split()) for s in selection.samples for e in s.expressions]
    areas = [s.mask.area / (s.mask.size[0] * s.mask.size[1]) for s in selection.samples if not s.is_no_target]
    verdicts = Counter(s.audit.verdict or "unaudited" for s in selection.samples)
    made = []

    def save(name: str, draw: Any) -> None:
        figure, axis = plt.subplots(figsize=(5, 3), dpi=100)
        draw(axis)
        figure.tight_layout()
        figure.savefig(folder / f"{name}.png", metadata=metadata)
        plt.close(figure)
        made.append(f"card/{name}.png")

    def lengths(axis: Any) -> None:
        axis.hist(words, bins=range(0, max(words, default=1) + 2), color="#3b6ea8")
        axis.set(xlabel="words per expression", ylabel="expressions")

    def mask_areas(axis: Any) -> None:
        axis.hist([100 * a for a in areas], bins=20, color="#a83b3b")
        axis.set(xlabel="mask area (% of the image)", ylabel="targets")

    def audit(axis: Any) -> None:
        names = sorted(verdicts)
        axis.bar(names, [verdicts[n] for n in names], color="#3ba86e")
        axis.set(ylabel="samples", title="audit verdict of exported samples")

    save("expression_length", lengths)
    save("mask_area", mask_areas)
    save("audit", audit)
    return made


def write_card(selection: Selection, root: Path, manifest: dict[str, Any]) -> None:
    """Write ``README.md`` and its plots into the export folder ``root``."""
    plots = _plots(selection, root / "card")
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
    auditors = Counter(s.audit.auditor for s in selection.samples if s.audit.auditor)
    edited = Counter(part for s in selection.samples for part in s.audit.edited)
    preview = manifest["unaudited_preview"]
    lines = [
        f"# {manifest['name']} (version {manifest['dataset_version']})",
        "",
        "**UNAUDITED PREVIEW: these samples were not all checked by people; do not train or evaluate on it.**"
        if preview
        else "Every sample below was accepted (or fixed) by a human auditor in Label Studio.",
        "",
        "A Multi-temporal Referring Segmentation dataset made with CRAFT-Agent: each sample is a pair of images of "
        "one place at two times, referring expressions of one change, and the change's mask (empty for a "
        "no-target expression).",
        "",
        f"- Licence: {manifest['license']}",
        f"- Formats: {', '.join(manifest['formats'])}",
        f"- Samples: {manifest['counts']['samples']} on {manifest['counts']['pairs']} pairs; splits by scene "
        f"group (seed {manifest['config']['split_seed']}, ratios {manifest['config']['split_ratios']}), "
        f"domain {manifest['config']['domain']}",
        f"- Made by craft-agent {manifest['craft_agent_version']}; file checksums in `manifest.json` "
        "(check with `craft-agent validate`).",
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
        f"Auditors: {len(auditors)}; samples edited by their auditor: "
        f"{sum(1 for s in selection.samples if s.audit.edited)} "
        f"({', '.join(f'{n} {k}' for k, n in sorted(edited.items())) or 'none'}).",
        "",
        "![audit verdicts](card/audit.png)",
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
    lines += ["", f"Plots: {', '.join(plots)}.", ""]
    (root / "README.md").write_text("\n".join(lines), encoding="utf-8")
