"""Datasets out and in: ``export``, ``validate`` and ``import`` (MTRefSeg layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from craft_agent.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    JsonOption,
    WorkspaceOption,
    emit_json,
    handled,
    out,
    print_failures,
    settings_for,
)


@handled
def export_command(
    out_dir: Annotated[Path, typer.Option("--out", help="Export folder (must be new or empty, or --overwrite).")],
    formats: Annotated[
        list[str], typer.Option("--format", help="mtrefseg, webdataset, parquet or grefcoco; repeat for several.")
    ],
    workspace: WorkspaceOption = None,
    ratios: Annotated[str, typer.Option(help="train,val,test ratios by scene group.")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Seed of the split assignment.")] = 0,
    domain: Annotated[str, typer.Option(help="rs (remote sensing), ns (street level) or all.")] = "all",
    include_unaudited: Annotated[
        bool, typer.Option("--include-unaudited", help="Add unaudited triplets: a preview, marked as such.")
    ] = False,
    samples_per_shard: Annotated[
        int, typer.Option(min=1, help="Samples (WebDataset) or pairs (Parquet) per shard.")
    ] = 1000,
    max_shard_mb: Annotated[float, typer.Option(help="Largest WebDataset shard in MB.")] = 1024,
    name: Annotated[str, typer.Option(help="Dataset name for the card.")] = "CRAFT-Agent MTRS dataset",
    dataset_version: Annotated[str | None, typer.Option(help="Version string (default: a content hash).")] = None,
    license_text: Annotated[str | None, typer.Option("--license", help="Licence stated in the card.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing export atomically.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Export audited triplets (accepted and fixed) as dataset shards with a manifest and a dataset card."""
    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.errors import ConfigError
    from craft_agent.export import export_dataset
    from craft_agent.export.samples import SplitConfig
    from craft_agent.formats import ExportOptions

    bad_ratios = ConfigError(f"--ratios {ratios!r} is not three ratios summing to 1.", hint="e.g. --ratios 0.8,0.1,0.1")
    try:
        parts = tuple(float(p) for p in ratios.split(","))
    except ValueError as exc:
        raise bad_ratios from exc
    if len(parts) != 3:
        raise bad_ratios
    try:
        splits = SplitConfig(ratios=parts, seed=seed)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise bad_ratios from exc
    if domain not in ("rs", "ns", "all"):
        raise ConfigError(f"--domain {domain!r} is unknown.", hint="use rs, ns or all.")
    settings = settings_for(workspace)
    extra = {"license": license_text} if license_text else {}
    with Catalog.from_settings(settings) as catalog:
        summary = export_dataset(
            catalog,
            ImageStore(settings.workspace),
            out_dir,
            [f.strip() for value in formats for f in value.split(",") if f.strip()],
            splits=splits,
            domain=domain,  # type: ignore[arg-type]
            include_unaudited=include_unaudited,
            options=ExportOptions(samples_per_shard=samples_per_shard, max_shard_bytes=int(max_shard_mb * 1e6)),
            name=name,
            dataset_version=dataset_version,
            overwrite=overwrite,
            **extra,
        )
    if as_json:
        emit_json(summary.__dict__)
    else:
        splits_text = ", ".join(f"{n} {split}" for split, n in summary.samples_by_split.items())
        out.print(
            f"[bold green]{summary.samples}[/] samples ({splits_text}) on {summary.pairs} pairs -> {summary.out} "
            f"as {', '.join(summary.formats)}: {summary.files} files, {summary.bytes / 1e6:.1f} MB, "
            f"{summary.seconds:.1f} s; version {summary.dataset_version}"
        )
        skipped = ", ".join(f"{n} {why}" for why, n in summary.skipped.items() if n)
        if skipped:
            out.print(f"left out: {skipped}")
        for warning in summary.warnings:
            out.print(f"[yellow]warning:[/] {warning}")
        if summary.unaudited_preview:
            out.print("[yellow]UNAUDITED PREVIEW: marked as such in the manifest and UNAUDITED_PREVIEW.txt[/]")
    raise typer.Exit(EXIT_OK)


@handled
def validate_command(
    export_dir: Annotated[Path, typer.Argument(help="An export folder written by `craft-agent export`.")],
    as_json: JsonOption = False,
) -> None:
    """Check an export: structure, every file's checksum, every mask, and the counts. Exit 1 on any problem."""
    from craft_agent.errors import ConfigError
    from craft_agent.export import validate

    if not export_dir.is_dir():
        problem = "is a file, not an export folder" if export_dir.exists() else "does not exist"
        raise ConfigError(f"{export_dir} {problem}.", hint="pass the folder written by `craft-agent export --out`.")
    report = validate(export_dir)
    if as_json:
        emit_json({**report.__dict__, "ok": report.ok})
    else:
        if report.ok:
            out.print(
                f"[bold green]valid[/]: {report.files_checked} files, {report.masks_checked} masks checked; "
                f"samples {report.samples}"
            )
        else:
            out.print(f"[bold red]INVALID[/]: {len(report.errors)} problem(s) in {export_dir}")
            for problem in report.errors[:50]:
                out.print(f"  [red]x[/] {problem}", highlight=False)
            if len(report.errors) > 50:
                out.print(f"  ... and {len(report.errors) - 50} more (see --json)")
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PARTIAL)


@handled
def import_command(
    src: Annotated[Path, typer.Argument(help="An MTRefSeg-layout dataset (a split, or a folder of splits).")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read an existing MTRefSeg-layout dataset into the catalog as accepted triplets, to extend it."""
    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.export.importer import import_mtrefseg
    from craft_agent.imagery import IngestOptions

    settings = settings_for(workspace, existing=False)
    with Catalog.from_settings(settings) as catalog:
        summary = import_mtrefseg(src, catalog, ImageStore(settings.workspace), IngestOptions())
    if as_json:
        emit_json(summary.to_json())
    else:
        out.print(
            f"[bold green]{summary.new_triplets}[/] new triplet(s) ({summary.triplets} in the source) on "
            f"{summary.pairs} pair(s), {summary.new_pairs} new; {len(summary.failed)} failed ({summary.seconds:.1f} s)"
        )
        print_failures(summary.failed)
    raise typer.Exit(EXIT_PARTIAL if summary.failed else EXIT_OK)
