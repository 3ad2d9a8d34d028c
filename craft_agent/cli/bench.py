"""``bench vision`` and ``bench agent``: candidates, masks and whole drafts scored against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from craft_agent.cli.common import (
    EXIT_OK,
    CategoriesOption,
    CheckpointOption,
    DetectorOption,
    JsonOption,
    MasksOption,
    ReportOption,
    WorkspaceOption,
    emit_json,
    handled,
    out,
    parse_categories,
    progress_bar,
    require_sources,
    settings_for,
)


@handled
def bench_vision(
    out_file: ReportOption,
    data: Annotated[
        Path | None, typer.Option(help="Folder of sources (one sub-folder per source with pre/ post/ mask/).")
    ] = None,
    masks: MasksOption = None,
    synthetic_pairs: Annotated[int, typer.Option(help="Generated scenes to score as well (0: none).")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the generated scenes.")] = 0,
    detector: Annotated[
        str | None,
        typer.Option(
            help="Change detector: classical or learned (default: learned if CRAFT_CHANGE_CHECKPOINT is set)."
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="change.pt of the learned detector. Env: CRAFT_CHANGE_CHECKPOINT.")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure change candidates and masks against ground truth, next to a plain baseline."""
    from craft_agent.bench.vision import run_vision_bench, write_report
    from craft_agent.change import default_detector
    from craft_agent.masks import create_mask_engine

    require_sources(data)
    settings = settings_for(workspace, existing=False, change_checkpoint=checkpoint)
    detector = detector or default_detector(settings)[0]
    engine = create_mask_engine(settings, masks)
    with progress_bar("bench vision", not as_json) as update:
        report = run_vision_bench(
            data,
            engine,
            synthetic_pairs,
            seed,
            progress=lambda name, done, total: update(done, total, name),
            detector=detector,
            checkpoint=settings.change_checkpoint if detector == "learned" else None,
        )
    write_report(report, out_file)
    if as_json:
        emit_json(report)
    else:
        table = Table(title=f"bench vision ({report['engine']} masks, {report['detector']} candidates)")
        columns = [
            ("source", None),
            ("pairs", "pairs"),
            ("recall@.5", "object_recall_50"),
            ("recall@.25", "object_recall_25"),
            ("precision", "precision"),
            ("pixel F1", "pixel_f1"),
            ("pixel IoU", "pixel_iou"),
            ("baseline F1", "baseline_pixel_f1"),
            ("type acc.", "type_accuracy"),
            ("s/pair", "sec_per_pair"),
            ("peak MB", "peak_mb"),
        ]
        for title, _ in columns:
            table.add_column(title, justify="left" if title == "source" else "right")
        for name, metrics in report["sources"].items():
            table.add_row(name, *[str(metrics.get(key, "-")) for _, key in columns[1:]])
        out.print(table)
        for name, problems in report["problems"].items():
            out.print(f"[yellow]{name}[/]: {len(problems)} problem(s), e.g. {problems[0]}", highlight=False)
        out.print(f"report written to {out_file}")
    raise typer.Exit(EXIT_OK)


@handled
def bench_agent(
    out_file: ReportOption,
    pairs: Annotated[int, typer.Option(help="Generated pairs to score (0: none).")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the generated pairs.")] = 0,
    data: Annotated[
        Path | None, typer.Option(help="Also score every labelled source folder here, in labels and detector mode.")
    ] = None,
    masks: Annotated[str | None, typer.Option(help="Mask engine: classical or sam.")] = None,
    detector: DetectorOption = None,
    checkpoint: CheckpointOption = None,
    left_out_runs: Annotated[
        Path | None,
        typer.Option(
            help="The --runs folder of `bench change` on the same --data: each pair is also drafted by the "
            "learned detector that never saw it (the run whose held_out.json lists it: its family left out, or "
            "its fold of --protocol pairs)."
        ),
    ] = None,
    categories: CategoriesOption = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score the whole agent (offline, and openai when configured) against generated and real ground truth.

    ``--categories`` applies to the detector modes on --data (labels mode drafts every labelled object)."""
    from craft_agent.bench.agent import QUIET_MARGIN_PX, QUIET_WINDOW_PX, run_agent_bench
    from craft_agent.bench.vision import write_report
    from craft_agent.change import choose_detector
    from craft_agent.llm import UsageMeter, create_llm_backend
    from craft_agent.masks import create_mask_engine

    require_sources(data)
    settings = settings_for(workspace, existing=False)
    detector_name, detector_checkpoint = choose_detector(settings, detector, checkpoint)
    backends = {"offline": lambda: create_llm_backend(settings, "offline")}
    if settings.llm_base_url:
        backends["openai"] = lambda: create_llm_backend(settings, "openai", usage=UsageMeter())
    with progress_bar("bench agent", not as_json) as update:
        report = run_agent_bench(
            backends,
            create_mask_engine(settings, masks),
            pairs,
            seed,
            data=data,
            detector=detector_name,
            checkpoint=detector_checkpoint,
            progress=lambda step: update(0, 0, step),
            left_out_runs=left_out_runs,
            categories=parse_categories(categories),
        )
    write_report(report, out_file)
    if as_json:
        emit_json(report)
        raise typer.Exit(EXIT_OK)
    if report["backends"]:
        columns = {
            "gt_coverage": "coverage",
            "mean_mask_iou": "mask IoU",
            "type_accuracy": "type acc.",
            "triplet_precision": "precision",
            "triplets_per_change": "per change",
            "duplicate_expressions": "dup. expr.",
            "llm_calls_per_triplet": "LLM calls/trip.",
            "pairs_per_min": "pairs/min",
        }
        table = Table(title=f"bench agent ({pairs} generated pairs, seed {seed}, {report['masks']} masks)")
        table.add_column("backend", no_wrap=True)
        for header in columns.values():
            table.add_column(header, justify="right")
        for name, metrics in report["backends"].items():
            table.add_row(name, *[_cell(metrics[k]) for k in columns])
        _print_table(table)
    if report["sources"]:
        columns = {
            "pairs": "pairs",
            "gt_objects": "objects",
            "triplets_per_pair": "per pair",
            "precision": "prec.",
            "instance_recall": "recall",
            "recall_ceiling": "ceiling",
            "instance_recall_with_groups": "w/ groups",
            "union_iou": "union IoU",
            "empty_pairs_ok": "empty ok",
            "type_accuracy": "type acc.",
        }
        asked = f", categories: {', '.join(report['categories'])}" if report["categories"] else ""
        table = Table(title=f"bench agent on labelled sources (detector mode: {report['detector']}{asked})")
        table.add_column("source", no_wrap=True)
        table.add_column("mode", no_wrap=True)
        for header in columns.values():
            table.add_column(header, justify="right")
        skipped = []
        for name, modes in report["sources"].items():
            if "error" in modes:
                skipped.append(f"{name}: {modes['error']} (not scored)")
                continue
            for mode, metrics in modes.items():
                table.add_row(name, mode.replace("_", " "), *[_cell(metrics[k]) for k in columns])
        _print_table(table)
        out.print(
            "ceiling: the best recall the single-target budget allows (one triplet per object); w/ groups: recall "
            "with the members of multi-target triplets counted too"
        )
        if any(mode.endswith("_quiet") for modes in report["sources"].values() for mode in modes):
            out.print(
                f"quiet: {QUIET_WINDOW_PX} px windows of the labelled pairs at least {QUIET_MARGIN_PX} px from every "
                "labelled change; 'empty ok' is the share that got no single-target triplet (the labels count "
                "only their kind of change: read it with --categories set to that kind)"
            )
        for line in skipped:
            out.print(line)
    out.print(f"report written to {out_file}")
    raise typer.Exit(EXIT_OK)


TABLE_WIDTH_OFF_TERMINAL = 140
"""Width of a figures table written to a file or a pipe (a log nobody's terminal wraps): the 80 columns rich
assumes there would cut the headers and figures to ellipses."""


def _print_table(table: Table) -> None:
    """``table`` on stdout; off a terminal at :data:`TABLE_WIDTH_OFF_TERMINAL` columns (rich caps a print at
    its console's width, so a console of that width prints it)."""
    if out.is_terminal:
        out.print(table)
    else:
        Console(width=TABLE_WIDTH_OFF_TERMINAL, soft_wrap=True).print(table)


def _cell(value: object) -> str:
    """A figure as a table shows it: floats to two decimals, "-" for none (the JSON report keeps them whole)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
