"""The baseline MTRS model: ``train --stage refer`` (via :mod:`craft_agent.cli.train`), ``eval`` and ``bench train``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from craft_agent.cli.common import EXIT_OK, JsonOption, ReportOption, emit_json, handled, out, progress_bar
from craft_agent.errors import ConfigError


def train_refer(
    data: list[Path],
    out_dir: Path,
    minutes: float | None,
    steps: int | None,
    device: str,
    seed: int,
    resume: bool,
    size: int,
    batch: int,
    stage1: Path | None,
    no_stage1: bool,
    as_json: bool,
    text_encoder: str = "auto",
) -> None:
    """``train --stage refer``: stage 1 first (unless given or refused), then language-guided fine-tuning."""
    from craft_agent.train.refer import train_refer_model

    with progress_bar("train refer", not as_json) as update:
        summary = train_refer_model(
            data,
            out_dir,
            minutes=minutes if minutes or steps else 10.0,
            steps=steps,
            device=device,
            seed=seed,
            resume=resume,
            stage1=False if no_stage1 else (stage1 or True),
            size=size,
            batch=batch,
            progress=update,
            text_encoder=text_encoder,
        )
    if as_json:
        emit_json(summary.model_dump(mode="json"))
        return
    val = f"val mIoU {summary.val['miou']:.3f}" if summary.val else "no val split"
    start = f"from stage 1 {summary.stage1}" if summary.stage1 else "without stage 1"
    out.print(
        f"[bold green]{summary.steps_this_run}[/] step(s) (step {summary.step} in all) on {summary.train_examples} "
        f"expression(s), {start}, text encoder {summary.text_encoder}, on {summary.device} in "
        f"{summary.seconds:.0f} s; {val}"
    )
    out.print(f"checkpoint {summary.checkpoint}; predictions {Path(summary.out) / 'predictions.png'}")


@handled
def eval_command(
    data: Annotated[Path, typer.Option("--data", help="An export folder (its MTRefSeg layout is scored).")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="A refer.pt from `train --stage refer`: predict, then score.")
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(help="A folder of any model's masks, <sample_id>_<k>.png or <sample_id>.png (foreground > 127)."),
    ] = None,
    split: Annotated[str, typer.Option(help="train, val, test or all.")] = "all",
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    as_json: JsonOption = False,
) -> None:
    """Score referring masks on an export: mIoU, oIoU, Pr@0.5..0.9 (MTRefSeg), N-acc / T-acc (gRefCOCO)."""
    if (checkpoint is None) == (predictions is None):
        raise ConfigError("pass one of --checkpoint and --predictions.", hint="e.g. --predictions preds/ --data EXPORT")
    chosen = None if split == "all" else split
    report: dict[str, Any]
    if predictions is not None:
        from craft_agent.evaluate import score_predictions

        report = score_predictions(predictions, data, chosen)
    elif checkpoint is not None:
        from craft_agent.train.refer import evaluate_checkpoint

        report = evaluate_checkpoint(checkpoint, [data], chosen, device)
    if as_json:
        emit_json(report)
    else:
        out.print_json(json.dumps(report))
    raise typer.Exit(EXIT_OK)


@handled
def bench_train(
    out_file: ReportOption,
    minutes: Annotated[float, typer.Option(min=0.05, help="CPU budget of each of the two trainings.")] = 10.0,
    pairs: Annotated[int, typer.Option(min=4, help="Generated pairs (70 % train, 10 % val, 20 % test).")] = 24,
    size: Annotated[int, typer.Option(min=128, help="Side of the generated pairs and of the training images.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the data and the training.")] = 0,
    text_encoder: Annotated[str, typer.Option(help="minilm, hashed or auto (minilm when installed).")] = "auto",
    as_json: JsonOption = False,
) -> None:
    """Trainer vs bare-torch samples/s, and test mIoU with and without stage 1 next to text-blind baselines."""
    import tempfile

    from craft_agent.bench.train import run_train_bench
    from craft_agent.bench.vision import write_report

    with (
        tempfile.TemporaryDirectory(prefix="craft-bench-train-") as scratch,
        progress_bar("bench train", not as_json) as update,
    ):
        report = run_train_bench(
            Path(scratch),
            minutes=minutes,
            pairs=pairs,
            size=size,
            seed=seed,
            progress=lambda n, d, t: update(d, t, n),
            text_encoder=text_encoder,
        )
    write_report(report, out_file)
    if as_json:
        emit_json(report)
    else:
        out.print_json(json.dumps(report))
    raise typer.Exit(EXIT_OK)
