"""Benchmarks of the system around the drafts: audit and export rates, peak memory, fault injection, flows."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from craft_agent.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    JsonOption,
    ReportOption,
    emit_json,
    err,
    handled,
    out,
    progress_bar,
    settings_for,
)
from craft_agent.errors import CraftError


@handled
def bench_audit(
    out_file: ReportOption,
    triplets: Annotated[int, typer.Option(min=6, help="Triplets to push, audit and pull.")] = 1000,
    batch_size: Annotated[int, typer.Option(min=1, help="Tasks per bulk import request.")] = 250,
    as_json: JsonOption = False,
) -> None:
    """Push and pull rates against a real Label Studio (a temporary local one unless configured)."""
    from craft_agent.bench.audit import run_audit_bench
    from craft_agent.bench.vision import write_report

    settings = settings_for(None, existing=False)
    report = run_audit_bench(settings, triplets=triplets, batch_size=batch_size, report=lambda m: err.print(m))
    write_report(report, out_file)
    if as_json:
        emit_json(report)
    else:
        table = Table(
            title=f"bench audit ({report['triplets']} triplets, {report['server']}, {report['images']} images)"
        )
        for column in ("push /s", "pull /s", "bare SDK bulk import /s", "round trip exact"):
            table.add_column(column, justify="right")
        table.add_row(
            str(report["push_per_s"]),
            str(report["pull_per_s"]),
            str(report["sdk_bulk_per_s"]),
            "yes" if report["roundtrip_exact"] else "[red]NO[/]",
        )
        out.print(table)
        out.print(
            f"click-to-mask at the backend ({report['clicks']} clicks): classical p50 {report['click_ms_p50']} ms, "
            f"p95 {report['click_ms_p95']} ms; tiny SAM on cached embeddings p50 {report['sam_click_ms_p50']} ms, "
            f"p95 {report['sam_click_ms_p95']} ms, first uncached click {report['sam_first_click_ms']} ms"
        )
        out.print(f"report written to {out_file}")
    raise typer.Exit(EXIT_OK if report["roundtrip_exact"] else EXIT_PARTIAL)


@handled
def bench_export(
    out_file: ReportOption,
    pairs: Annotated[int, typer.Option(min=1, help="Generated pairs in the exported dataset.")] = 32,
    size: Annotated[int, typer.Option(min=64, help="Side of the generated images (px).")] = 1024,
    formats: Annotated[list[str] | None, typer.Option("--format", help="Formats to export (default: all).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Export throughput in MB/s next to a plain tar of the same bytes (target ratio >= 0.5)."""
    from craft_agent.bench.export import run_export_bench
    from craft_agent.bench.vision import write_report

    report = run_export_bench(pairs=pairs, size=size, formats=formats or None)
    write_report(report, out_file)
    if as_json:
        emit_json(report)
    else:
        shape = f"{report['samples']} samples, {report['megabytes']} MB, {', '.join(report['formats'])}"
        table = Table(title=f"bench export ({shape})")
        for column in ("export MB/s", "plain tar MB/s", "ratio", "target"):
            table.add_column(column, justify="right")
        table.add_row(str(report["export_mb_per_s"]), str(report["plain_tar_mb_per_s"]), str(report["ratio"]), ">= 0.5")
        out.print(table)
        out.print(f"report written to {out_file}")
    raise typer.Exit(EXIT_OK)


@handled
def bench_big_scene(
    out_file: ReportOption,
    side: Annotated[int, typer.Option(min=256, help="Side of the scene (px); a Sentinel-2 tile is 10980.")] = 10980,
    as_json: JsonOption = False,
) -> None:
    """Peak memory (RSS) of ingesting a generated 4-band uint16 GeoTIFF pair of one Sentinel-2 tile (< 2048 MB)."""
    from craft_agent.bench.big_scene import run_big_scene_bench
    from craft_agent.bench.vision import write_report

    report = run_big_scene_bench(side=side, report=lambda line: err.print(line))
    write_report(report, out_file)
    if as_json:
        emit_json(report)
    else:
        out.print(
            f"{report['side']} x {report['side']} px, {report['bands']} bands: {report['tiles']} tiles in "
            f"{report['seconds']} s, peak RSS {report['peak_rss_mb']} MB (target < {report['target_mb']} MB)"
        )
        out.print(f"report written to {out_file}")
    raise typer.Exit(EXIT_OK)


@handled
def bench_reliability(
    out_file: ReportOption,
    quick: Annotated[bool, typer.Option("--quick", help="The CI-sized variant: fewer pairs and trials.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the kill moments and the LLM faults.")] = 0,
    label_studio: Annotated[
        bool, typer.Option("--label-studio/--no-label-studio", help="Include the local Label Studio server's part.")
    ] = True,
    scratch: Annotated[
        Path | None, typer.Option(help="Keep the run's workspaces and exports here (default: a temporary folder).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Fault injection: kill -9 during generate/ingest/export, Label Studio restarts, LLM faults, bad input,
    a secrets scan and the server's exposure; prints the figures (zeros where zeros are due)."""
    from craft_agent.bench.reliability import run_reliability_bench
    from craft_agent.bench.vision import write_report

    with contextlib.ExitStack() as stack:
        folder = scratch or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="craft-reliability-")))
        if scratch and scratch.exists() and any(scratch.iterdir()):
            raise CraftError(f"--scratch {scratch} is not empty.", hint="pass a new or empty folder.")
        folder.mkdir(parents=True, exist_ok=True)
        with progress_bar("bench reliability", not as_json) as update:
            report = run_reliability_bench(
                folder, quick=quick, seed=seed, label_studio=label_studio, progress=lambda n, d, t: update(d, t, n)
            )
    write_report(report, out_file)
    if as_json:
        emit_json(report)
    else:
        out.print_json(json.dumps({k: v for k, v in report.items() if k != "config"}))
        out.print(f"report written to {out_file}")
    raise typer.Exit(EXIT_OK)


@handled
def bench_flows(
    out_file: ReportOption,
    pairs: Annotated[int, typer.Option(min=1, help="Generated pairs drafted each way.")] = 20,
    size: Annotated[int, typer.Option(min=64, help="Side of the generated pairs (px).")] = 256,
    workers: Annotated[int, typer.Option(min=1, help="Dask worker processes.")] = 2,
    as_json: JsonOption = False,
) -> None:
    """The same pairs drafted by the plain loop, by the flow on threads and on Dask: times and identical ids."""
    from craft_agent.bench.flows import run_flows_bench
    from craft_agent.bench.vision import write_report

    with (
        tempfile.TemporaryDirectory(prefix="craft-bench-flows-") as scratch,
        progress_bar("bench flows", not as_json) as update,
    ):
        report = run_flows_bench(
            Path(scratch), pairs=pairs, size=size, workers=workers, progress=lambda n, d, t: update(d, t, n)
        )
    write_report(report, out_file)
    if as_json:
        emit_json(report)
    else:
        out.print_json(json.dumps(report))
    raise typer.Exit(EXIT_OK if report["identical"] else EXIT_PARTIAL)
