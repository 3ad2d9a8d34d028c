"""``ingest``: image pairs into the workspace catalog."""

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
    print_warnings,
    progress_bar,
    settings_for,
)


@handled
def ingest(
    src: Annotated[
        Path,
        typer.Argument(
            help="Folder of image pairs (A/ B/, pre/ post/, MTRefSeg, band sets), "
            "a collection of such folders, or a manifest .jsonl/.csv."
        ),
    ],
    workspace: WorkspaceOption = None,
    domain: Annotated[
        str | None,
        typer.Option(help="Domain of pairs whose source does not say: rs or ns. Env: CRAFT_DEFAULT_DOMAIN."),
    ] = None,
    group_pattern: Annotated[
        str | None,
        typer.Option(help="Regex on the pair name whose first group is the scene group, e.g. '^(.+)_\\d{4}_\\d{4}$'."),
    ] = None,
    bands: Annotated[str | None, typer.Option(help="1-based bands to use as RGB, e.g. 4,3,2.")] = None,
    tile_size: Annotated[int | None, typer.Option(help="Cut pairs larger than this into tiles (px).")] = None,
    tile_overlap: Annotated[int | None, typer.Option(help="Overlap between tiles (px).")] = None,
    gsd: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Ground sample distance in metres per pixel, for pairs without a georeference in metres "
            "(sizes and minimum object areas are then in metres).",
        ),
    ] = None,
    class_table: Annotated[
        Path | None,
        typer.Option(help="JSON class table of semantic label maps (label1/ label2/); default: SECOND's palette."),
    ] = None,
    label_category: Annotated[
        str | None,
        typer.Option(
            help="What the binary change masks mark, e.g. building for LEVIR-CD or WHU-CD (one of: "
            "building, roof, vegetation, vehicle, water, ground, road, facade, object)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest image pairs into the workspace catalog (idempotent: known pairs are skipped)."""
    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.imagery import IngestOptions
    from craft_agent.imagery import ingest as run_ingest
    from craft_agent.models import CATEGORIES, Domain

    if domain not in (None, "rs", "ns"):
        raise typer.BadParameter(f"--domain must be rs or ns, got {domain!r}")
    if label_category is not None and label_category not in CATEGORIES:
        raise typer.BadParameter(f"--label-category must be one of {', '.join(CATEGORIES)}; got {label_category!r}")
    settings = settings_for(
        workspace, existing=False, default_domain=domain, tile_size=tile_size, tile_overlap=tile_overlap
    )
    options = IngestOptions.from_settings(
        settings,
        group_pattern=group_pattern,
        bands=_parse_bands(bands),
        domain=Domain(settings.default_domain),
        gsd=gsd,
        class_table=class_table,
        label_category=label_category,
    )
    with Catalog.from_settings(settings) as catalog, progress_bar("ingest", not as_json) as update:
        summary = run_ingest(src, catalog, ImageStore(settings.workspace), options, progress=update)
    print_warnings(summary.warnings)  # on stderr, with --json too: a guessed band order must not go unseen
    if as_json:
        emit_json(summary.to_json())
    else:
        extra = "".join(
            f", {n} {what}"
            for n, what in (
                (summary.replaced, "earlier pair(s) of the same files replaced"),
                (summary.skipped_empty_tiles, "empty tile(s) left out"),
            )
            if n
        )
        out.print(
            f"[bold green]{summary.ingested}[/] pair(s) ingested, {summary.skipped} already in the catalog{extra}, "
            f"[{'red' if summary.failed else 'green'}]{len(summary.failed)} failed[/] "
            f"({summary.layout} layout, {summary.seconds:.1f} s) -> {settings.workspace}"
        )
        print_failures(summary.failed)
    raise typer.Exit(EXIT_PARTIAL if summary.failed else EXIT_OK)


def _parse_bands(value: str | None) -> tuple[int, int, int] | None:
    if value is None:
        return None
    try:
        parts = tuple(int(p) for p in value.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"--bands takes three 1-based band numbers like 4,3,2, got {value!r}") from exc
    if len(parts) != 3 or min(parts) < 1:
        raise typer.BadParameter(f"--bands takes three 1-based band numbers like 4,3,2, got {value!r}")
    return (parts[0], parts[1], parts[2])
