"""The learned change proposer: ``train`` it, and ``bench change`` to score it on pairs it never saw."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from craft_agent.cli.common import (
    EXIT_OK,
    JsonOption,
    ReportOption,
    emit_json,
    handled,
    out,
    progress_bar,
    require_sources,
)
from craft_agent.errors import CraftError


@handled
def train_command(
    data: Annotated[
        list[Path],
        typer.Option(
            "--data",
            help="change: source folder with change masks, a workspace or an export; refer: an export. Repeatable.",
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Run folder: change.pt or refer.pt, metrics.jsonl, predictions.png.")
    ],
    stage: Annotated[
        str, typer.Option(help="change (stage 1: the change model) or refer (stage 2: the MTRS baseline).")
    ] = "change",
    minutes: Annotated[
        float | None, typer.Option(min=0.01, help="Wall-clock budget (default 12 when --steps is not given).")
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Optimizer steps of this run.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the split, the crops and the initial weights.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Go on training OUT/change.pt.")] = False,
    crop: Annotated[int, typer.Option(min=32, help="Side of the training crops (px).")] = 256,
    batch: Annotated[int, typer.Option(min=1, help="Crops per step.")] = 8,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9, help="Share of pairs held out and scored.")] = 0.1,
    size: Annotated[int, typer.Option(min=32, help="refer: side the images are resized to (px).")] = 256,
    stage1: Annotated[
        Path | None, typer.Option(help="refer: start from this change.pt (default: train stage 1 first).")
    ] = None,
    no_stage1: Annotated[bool, typer.Option("--no-stage1", help="refer: no stage 1 (the ablation).")] = False,
    text_encoder: Annotated[
        str,
        typer.Option(
            help="refer: minilm (pretrained all-MiniLM-L6-v2, frozen; the text extra), hashed (trained from "
            "scratch) or auto (minilm when installed)."
        ),
    ] = "auto",
    as_json: JsonOption = False,
) -> None:
    """Train a network: the change model (stage 1, also the learned change proposer) or the MTRS baseline (refer)."""
    if stage not in ("change", "refer"):
        raise CraftError(f"--stage {stage!r} is unknown.", hint="use --stage change or --stage refer.")
    if stage == "refer":
        from craft_agent.cli.refer import train_refer

        train_refer(
            data, out_dir, minutes, steps, device, seed, resume, size, batch, stage1, no_stage1, as_json, text_encoder
        )
        raise typer.Exit(EXIT_OK)
    from craft_agent.train.change import train_change_model

    with progress_bar("train change", not as_json) as update:
        summary = train_change_model(
            data,
            out_dir,
            minutes=minutes if minutes or steps else 12.0,
            steps=steps,
            device=device,
            seed=seed,
            resume=resume,
            crop=crop,
            batch=batch,
            val_fraction=val_fraction,
            progress=update,
        )
    if as_json:
        emit_json(summary.model_dump(mode="json"))
    else:
        val = f"val pixel F1 {summary.val_pixel_f1}" if summary.val_pixel_f1 is not None else "no pair held out"
        out.print(
            f"[bold green]{summary.steps_this_run}[/] step(s) (step {summary.step} in all) on {summary.train_pairs} "
            f"pair(s) from {', '.join(summary.sources)} on {summary.device} in {summary.seconds:.0f} s; {val}; "
            f"{summary.skipped_without_mask} pair(s) without a change mask skipped"
        )
        out.print(
            f"checkpoint {summary.checkpoint}; predictions ({summary.predictions_from}) {summary.predictions_png}"
        )
    raise typer.Exit(EXIT_OK)


@handled
def bench_change(
    data: Annotated[Path, typer.Option(help="Folder of sources (sub-folders with pre/ post/ mask/).")],
    out_file: ReportOption,
    minutes: Annotated[float | None, typer.Option(min=0.01, help="Training budget per fold (default 6).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Training steps per fold.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Training seed of every fold.")] = 0,
    runs: Annotated[Path | None, typer.Option(help="Keep each fold's run folder here (default: discarded).")] = None,
    protocol: Annotated[
        str,
        typer.Option(help="families: leave one dataset family out; pairs: hold out pairs of every source (--folds)."),
    ] = "families",
    folds: Annotated[int, typer.Option(min=2, help="Folds of --protocol pairs.")] = 3,
    as_json: JsonOption = False,
) -> None:
    """Train the learned proposer without the pairs it is scored on; score it next to the classical one."""
    from craft_agent.bench.change import run_change_bench
    from craft_agent.bench.vision import write_report

    require_sources(data)
    if protocol not in ("families", "pairs"):
        raise CraftError(f"--protocol {protocol} is not known.", hint="use families or pairs.")
    with progress_bar("bench change", not as_json) as update:
        report = run_change_bench(
            data,
            minutes=minutes if minutes or steps else 6.0,
            steps=steps,
            device=device,
            seed=seed,
            runs=runs,
            progress=lambda name, done, total: update(done, total, name),
            protocol="pairs" if protocol == "pairs" else "families",
            folds=folds,
        )
    write_report(report, out_file)
    if as_json:
        emit_json(report)
    else:
        what = "leave one family out" if protocol == "families" else f"held-out pairs, {folds} folds"
        table = Table(title=f"bench change ({what}; pixel scores of the changed map)")
        for column in ("source", "pairs", "learned F1", "learned IoU", "classical F1"):
            table.add_column(column, justify="left" if column == "source" else "right")
        for name, metrics in report["sources"].items():
            table.add_row(
                name,
                str(metrics["pairs"]),
                str(metrics["pixel_f1"]),
                str(metrics["pixel_iou"]),
                str(metrics["classical_pixel_f1"]),
            )
        out.print(table)
        out.print(f"report written to {out_file}")
    raise typer.Exit(EXIT_OK)
