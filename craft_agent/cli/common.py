"""The ``craft-agent`` command line (typer + rich).

Every command accepts ``--json`` and then prints exactly one JSON object on stdout (progress and messages
go to stderr). Exit status: 0 when everything worked, 1 when the run completed but some inputs failed
(they are listed with reasons), 2 when the command could not run at all (bad arguments, unusable source).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from craft_agent import __version__
from craft_agent.errors import CraftError
from craft_agent.settings import Settings, load_settings, require_workspace

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_FAILED = 2

app = typer.Typer(
    name="craft-agent",
    help="Build Multi-temporal Referring Segmentation datasets: ingest image pairs, find changes, "
    "draft referring expressions and masks, audit them in Label Studio, export shards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
examples_app = typer.Typer(
    help="Example data made by the project (synthetic bi-temporal scenes).", no_args_is_help=True
)
catalog_app = typer.Typer(help="Look into the catalog.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print and save figures.", no_args_is_help=True)
llm_app = typer.Typer(help="Language-model helpers.", no_args_is_help=True)
audit_app = typer.Typer(
    help="Human audit in Label Studio: serve, push, pull, status (see auditing/GUIDE.md).", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
app.add_typer(llm_app, name="llm")
app.add_typer(examples_app, name="examples")
app.add_typer(catalog_app, name="catalog")
app.add_typer(bench_app, name="bench")
flows_app = typer.Typer(
    help="Prefect flows: a local Prefect server with scheduled regeneration and audit sync.", no_args_is_help=True
)
app.add_typer(flows_app, name="flows")

# soft_wrap: messages are not broken into lines at 80 columns; a path or a command in a hint stays whole
# and copyable in a log or a pipe (a terminal wraps long lines by itself)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

WorkspaceOption = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Workspace folder (catalog, images, caches). Env: CRAFT_WORKSPACE."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON summary on stdout.")]


ProposalsOption = Annotated[
    str,
    typer.Option(
        help="Where changes come from: labels (the pair's change labels), detector, or auto (labels where a pair "
        "has them, the detector elsewhere)."
    ),
]
DetectorOption = Annotated[
    str | None,
    typer.Option(
        help="Change detector in detector mode: classical or learned (default: learned if the workspace "
        "sets CRAFT_CHANGE_CHECKPOINT, else classical)."
    ),
]
SnapOption = Annotated[
    bool,
    typer.Option(
        help="Refine label masks with the mask engine (SAM when configured) on the right date; the label is kept "
        "where the two disagree."
    ),
]
CheckpointOption = Annotated[
    Path | None, typer.Option(help="The learned detector's checkpoint (RUN/change.pt from `train --stage change`).")
]


def detector_choice(settings: Settings, detector: str | None, checkpoint: Path | None) -> tuple[str, Path | None]:
    """The detector and checkpoint to use: the options, else the workspace's default."""
    from craft_agent.change import default_detector

    if detector is None and checkpoint is not None:
        return "learned", checkpoint
    default_name, default_checkpoint = default_detector(settings)
    name = detector or default_name
    return name, checkpoint or (default_checkpoint if name == "learned" else None)


def emit_json(payload: dict[str, Any]) -> None:
    """Write the command's JSON summary as one line on stdout."""
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def fail(error: CraftError, as_json: bool) -> typer.Exit:
    """Report an error that stopped the whole command and return the exit to raise."""
    if as_json:
        emit_json({"error": error.message, "fix": error.hint})
    else:
        err.print(f"[bold red]error:[/] {error.message}")
        if error.hint:
            err.print(f"[yellow]fix:[/] {error.hint}")
    return typer.Exit(EXIT_FAILED)


def print_failures(failures: list[Any]) -> None:
    """One line per failed input, then its reason (which ends with the fix)."""
    for failure in failures:
        out.print(f"  [red]x[/] {failure.input}\n    {failure.error}", highlight=False)


def print_warnings(warnings: list[Any], shown: int = 20) -> None:
    """One yellow line per warning on stderr (the first ``shown``), then how many more the --json summary has."""
    for warning in warnings[:shown]:
        err.print(f"[bold yellow]warning:[/] {warning.input}\n    {warning.warning}", highlight=False, soft_wrap=True)
    if len(warnings) > shown:
        err.print(f"[bold yellow]warning:[/] ... and {len(warnings) - shown} more (see --json)")


@contextmanager
def progress_bar(description: str, enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr; yields a callback (done, total, name)."""
    if not enabled or not err.is_terminal:
        yield lambda done, total, name: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[current]}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None, current="")

        def update(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, current=name)

        yield update


def settings_for(workspace: Path | None, *, existing: bool = True, **overrides: Any) -> Settings:
    """The command's settings; with ``existing`` (the default) a workspace without a catalog is refused.

    Only commands that fill a workspace (ingest, import) or do not read one (doctor, bench) pass
    ``existing=False``: anywhere else a mistyped ``--workspace`` would silently start an empty one.

    Raises:
        ConfigError: for invalid settings, or a missing workspace (naming the workspaces nearby).
    """
    settings = load_settings(workspace=workspace, **overrides)
    if existing:
        require_workspace(settings)
    return settings


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"craft-agent {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_version_callback, is_eager=True),
    ] = False,
) -> None:
    """Build Multi-temporal Referring Segmentation datasets."""


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


@app.command()
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

    try:
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
    except CraftError as exc:
        raise fail(exc, as_json) from exc
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


@app.command()
def candidates(
    workspace: WorkspaceOption = None,
    masks: Annotated[
        str | None, typer.Option(help="Mask engine: classical or sam (default: sam if configured).")
    ] = None,
    redo: Annotated[bool, typer.Option(help="Also process pairs that already have candidates.")] = False,
    proposals: ProposalsOption = "auto",
    detector: DetectorOption = None,
    checkpoint: CheckpointOption = None,
    snap: SnapOption = False,
    as_json: JsonOption = False,
) -> None:
    """Find change candidates in every ingested pair and segment them (resumable: done pairs are skipped)."""
    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.change.stage import propose_candidates
    from craft_agent.masks import create_mask_engine

    try:
        settings = settings_for(workspace)
        engine = create_mask_engine(settings, masks)
        detector_name, detector_checkpoint = detector_choice(settings, detector, checkpoint)
        with Catalog.from_settings(settings) as catalog, progress_bar("candidates", not as_json) as update:
            summary = propose_candidates(
                catalog,
                ImageStore(settings.workspace),
                engine,
                detector_name=detector_name,
                redo=redo,
                progress=update,
                proposals=proposals,
                checkpoint=detector_checkpoint,
                snap=snap,
            )
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json(summary.to_json())
    else:
        by_type = ", ".join(f"{k} {v}" for k, v in sorted(summary.by_type.items())) or "none"
        out.print(
            f"[bold green]{summary.candidates}[/] candidate(s) ({summary.confident} confident; {by_type}) "
            f"in {summary.pairs} pair(s), {summary.skipped} already done, "
            f"[{'red' if summary.failed else 'green'}]{len(summary.failed)} failed[/] ({summary.seconds:.1f} s)"
        )
        print_failures(summary.failed)
    raise typer.Exit(EXIT_PARTIAL if summary.failed else EXIT_OK)


@app.command()
def generate(
    workspace: WorkspaceOption = None,
    llm: Annotated[
        str | None,
        typer.Option(help="Language model: offline or openai (default: openai if CRAFT_LLM_BASE_URL is set)."),
    ] = None,
    masks: Annotated[
        str | None, typer.Option(help="Mask engine: classical or sam (default: sam if configured).")
    ] = None,
    max_rounds: Annotated[int, typer.Option(help="Correction rounds before a target is left uncorrected.")] = 2,
    expressions: Annotated[int, typer.Option(help="Referring expressions per target.")] = 3,
    no_target_ratio: Annotated[float, typer.Option(help="No-target expressions per kept target.")] = 0.1,
    budget_usd: Annotated[
        float | None,
        typer.Option(
            help="Stop cleanly once the LLM has cost this much (USD; needs the model's price: see "
            "CRAFT_LLM_PRICE_PER_1K_PROMPT)."
        ),
    ] = None,
    budget_tokens: Annotated[
        int | None, typer.Option(min=1, help="Stop cleanly once the LLM has used this many tokens.")
    ] = None,
    proposals: ProposalsOption = "auto",
    detector: DetectorOption = None,
    checkpoint: CheckpointOption = None,
    snap: SnapOption = False,
    budget: Annotated[
        int | None,
        typer.Option(
            help="Most single-target triplets per pair in detector mode (default: 8 on a 1024 px tile, scaled "
            "with the image side; labels mode keeps every labelled object)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the CRAFT agent over the ingested pairs and draft triplets (resumable, never duplicates)."""
    from craft_agent.agent.nodes import AgentConfig
    from craft_agent.agent.run import generate as run_generate
    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.llm import UsageMeter, create_llm_backend
    from craft_agent.masks import create_mask_engine

    try:
        settings = settings_for(workspace)
        backend = create_llm_backend(settings, llm, usage=UsageMeter(budget_usd, budget_tokens))
        engine = create_mask_engine(settings, masks)
        detector_name, detector_checkpoint = detector_choice(settings, detector, checkpoint)
        config = AgentConfig(
            max_rounds=max_rounds,
            expressions_per_target=expressions,
            no_target_ratio=no_target_ratio,
            proposals=proposals,
            detector=detector_name,
            checkpoint=str(detector_checkpoint) if detector_checkpoint else None,
            budget=budget,
            snap=snap,
        )
        with Catalog.from_settings(settings) as catalog, progress_bar("generate", not as_json) as update:
            summary = run_generate(
                catalog, ImageStore(settings.workspace), backend, engine, settings.workspace, config, progress=update
            )
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json(summary.to_json())
    else:
        cost = f"${summary.cost_usd:.4f}" if summary.cost_known else "cost unknown (no price for the model)"
        out.print(
            f"[bold green]{summary.triplets}[/] triplet(s) drafted ({summary.uncorrected} uncorrected) from "
            f"{summary.pairs} pair(s); {summary.skipped} already done, {summary.resumed} resumed, "
            f"[{'red' if summary.failed else 'green'}]{len(summary.failed)} failed[/]; "
            f"{summary.llm_calls} LLM call(s), {cost} ({summary.seconds:.1f} s)"
        )
        if summary.fallbacks:
            reasons = ", ".join(f"{name} {count}" for name, count in sorted(summary.fallback_reasons.items()))
            out.print(
                f"[yellow]{summary.fallbacks} of {summary.llm_steps} {summary.llm_backend} step(s) fell back to the "
                f"offline backend ({reasons}); their triplets say so in provenance.steps.[/]"
            )
        if summary.stopped_by_budget:
            out.print("[yellow]stopped: the LLM budget is spent; re-run with a larger budget to go on.[/]")
        print_failures(summary.failed)
    if summary.mostly_fallbacks:
        err.print(
            f"[bold red]warning: {summary.fallbacks} of {summary.llm_steps} steps were not made by "
            f"{summary.llm_backend} but by the offline fallback: this run's triplets are mostly offline drafts.[/] "
            "Check the endpoint, the model (structured output, images) and the failures above, then re-run."
        )
    raise typer.Exit(EXIT_PARTIAL if summary.failed or summary.mostly_fallbacks else EXIT_OK)


@examples_app.command("make")
def examples_make(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the example pairs to.")],
    pairs: Annotated[int, typer.Option(help="Number of pairs.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same scenes.")] = 0,
    size: Annotated[int, typer.Option(help="Image size in pixels (square).")] = 512,
    street_fraction: Annotated[float, typer.Option(help="Share of street-like (ns) scenes.")] = 0.25,
    as_json: JsonOption = False,
) -> None:
    """Generate synthetic bi-temporal scenes with exact ground truth (pre/ post/ mask/ manifest.jsonl)."""
    from craft_agent.synthetic import write_examples

    try:
        summary = write_examples(out_dir, pairs=pairs, seed=seed, size=size, street_fraction=street_fraction)
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    payload = {
        "out": str(summary.out),
        "pairs": summary.pairs,
        "changes": summary.changes,
        "by_type": summary.by_type,
        "manifest": str(summary.manifest),
        "seed": seed,
    }
    if as_json:
        emit_json(payload)
    else:
        by_type = ", ".join(f"{k} {v}" for k, v in sorted(summary.by_type.items()))
        out.print(f"wrote {summary.pairs} pairs with {summary.changes} changes ({by_type}) to {summary.out}")
    raise typer.Exit(EXIT_OK)


@app.command()
def doctor(
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check what is configured and reachable (LLM, SAM checkpoint, Label Studio, catalog), with fixes."""
    from craft_agent.doctor import run_checks

    try:
        checks = run_checks(settings_for(workspace, existing=False))
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    failed = [c for c in checks if c.status == "error"]
    if as_json:
        emit_json({"ok": not failed, "checks": [c.as_dict() for c in checks]})
    else:
        table = Table(title="craft-agent doctor", show_lines=False)
        for column in ("check", "status", "detail", "fix"):
            table.add_column(column, overflow="fold")
        colours = {"ok": "green", "offline": "cyan", "error": "red"}
        for check in checks:
            table.add_row(check.name, f"[{colours[check.status]}]{check.status}[/]", check.detail, check.fix)
        out.print(table)
    raise typer.Exit(EXIT_PARTIAL if failed else EXIT_OK)


@app.command()
def schema(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for one <Record>.schema.json per record.")] = Path(
        "docs/schema"
    ),
    as_json: JsonOption = False,
) -> None:
    """Write the JSON schema of the data model (pairs, candidates, triplets, audits)."""
    from craft_agent.models import json_schemas

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in json_schemas().items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(str(path))
    if as_json:
        emit_json({"written": written})
    else:
        out.print("\n".join(f"wrote {p}" for p in written))
    raise typer.Exit(EXIT_OK)


@catalog_app.command("info")
def catalog_info(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Counts of pairs, scene groups, candidates, triplets per state, audits and interrupted runs."""
    from craft_agent.catalog import Catalog

    try:
        with Catalog.from_settings(settings_for(workspace)) as catalog:
            info = catalog.info()
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json(info)
    else:
        table = Table(title=f"catalog {info['catalog']}")
        table.add_column("what")
        table.add_column("count", justify="right")
        table.add_row("pairs", str(info["pairs"]))
        for domain, count in info["pairs_by_domain"].items():
            table.add_row(f"  {domain}", str(count))
        table.add_row("scene groups", str(info["scene_groups"]))
        table.add_row("candidates", str(info["candidates"]))
        for state, count in info["triplets"].items():
            table.add_row(f"triplets {state}", str(count))
        table.add_row("audits", str(info["audits"]))
        interrupted = info["interrupted_runs"]
        table.add_row("interrupted runs", str(interrupted["count"]))
        out.print(table)
        if interrupted["latest"]:
            latest = interrupted["latest"]
            out.print(
                f"[yellow]latest interrupted run: {latest['kind']} started {latest['started_at']} "
                f"(process {latest['pid']} on {latest['host']} ended without finishing); re-run that stage.[/]",
                highlight=False,
            )
    raise typer.Exit(EXIT_OK)


@catalog_app.command("remove")
def catalog_remove(
    pair: Annotated[
        list[str] | None, typer.Option("--pair", help="Id of a pair to remove; repeat for several.")
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(help="Remove every pair ingested from this folder, manifest or image file (or from inside it)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Also remove pairs with audited triplets (their audits are lost).")
    ] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove pairs with their candidates, triplets and audits; refused for audited triplets unless --force."""
    from craft_agent.catalog import Catalog
    from craft_agent.errors import ConfigError

    try:
        if bool(pair) == (source is not None):
            raise ConfigError(
                "catalog remove needs either --pair or --source.",
                hint="pass --pair ID (repeatable) or --source PATH (the folder or manifest given to ingest).",
            )
        settings = settings_for(workspace)
        with Catalog.from_settings(settings) as catalog:
            ids = list(pair) if pair else catalog.pair_ids_from(source) if source else []
            if not ids:
                raise ConfigError(
                    f"no pair in the catalog was ingested from {source}.",
                    hint="pass the folder, manifest or image file that was given to `craft-agent ingest`, or a "
                    "folder inside it.",
                )
            removed = catalog.remove_pairs(ids, force=force)
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json(removed.__dict__)
    else:
        out.print(
            f"removed {removed.pairs} pair(s), {removed.candidates} candidate(s), {removed.triplets} triplet(s) "
            f"and {removed.audits} audit record(s) from {settings.workspace}"
        )
        if removed.audited_triplets:
            out.print(f"[yellow]{removed.audited_triplets} of the removed triplets were audited (--force).[/]")
    raise typer.Exit(EXIT_OK)


@app.command("preview")
def preview_command(
    workspace: WorkspaceOption = None,
    pair: Annotated[
        list[str] | None, typer.Option("--pair", help="Only this pair (id or name); repeat for several.")
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            help="Only triplets in this state: drafted, queued_for_audit, accepted, rejected, fixed or exported; "
            "repeat for several."
        ),
    ] = None,
    change_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only appear, disappear, state_change or no_target; repeat for several."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder of the sheet (default WORKSPACE/preview); its earlier pages are replaced."),
    ] = None,
    per_page: Annotated[int, typer.Option(min=1, help="Rows per PNG page.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Contact sheet of triplets (PNG pages and one self-contained index.html) to judge a run before its audit."""
    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.preview import write_preview

    try:
        settings = settings_for(workspace)
        with Catalog.from_settings(settings) as catalog, progress_bar("preview", not as_json) as update:
            summary = write_preview(
                catalog,
                ImageStore(settings.workspace),
                out_dir or settings.workspace / "preview",
                pairs=pair or (),
                states=state or (),
                types=change_type or (),
                per_page=per_page,
                progress=update,
            )
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json(summary.model_dump(mode="json", include={"out", "pages", "html", "triplets"}))
    else:
        counts = "; ".join(
            ", ".join(f"{n} {name}" for name, n in group.items()) for group in (summary.by_state, summary.by_type)
        )
        out.print(
            f"[bold green]{summary.triplets}[/] triplet(s) ({counts}) on {summary.pages} page(s) in {summary.out}",
            highlight=False,
        )
        out.print(f"open {summary.html}", highlight=False)
    raise typer.Exit(EXIT_OK)


@bench_app.command("vision")
def bench_vision(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the JSON report.")],
    data: Annotated[
        Path | None, typer.Option(help="Folder of sources (one sub-folder per source with pre/ post/ mask/).")
    ] = None,
    masks: Annotated[
        str | None, typer.Option(help="Mask engine: classical or sam (default: sam if configured).")
    ] = None,
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

    try:
        if data is not None and not data.is_dir():
            raise CraftError(f"--data {data} is not a folder.", hint="pass a folder of sources like shared/data.")
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
    except CraftError as exc:
        raise fail(exc, as_json) from exc
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


@bench_app.command("agent")
def bench_agent(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the JSON report.")],
    pairs: Annotated[int, typer.Option(help="Generated pairs to score (0: none).")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the generated pairs.")] = 0,
    data: Annotated[
        Path | None, typer.Option(help="Also score every labelled source folder here, in labels and detector mode.")
    ] = None,
    masks: Annotated[str | None, typer.Option(help="Mask engine: classical or sam.")] = None,
    detector: DetectorOption = None,
    checkpoint: CheckpointOption = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score the whole agent (offline, and openai when configured) against generated and real ground truth."""
    from craft_agent.bench.agent import run_agent_bench
    from craft_agent.bench.vision import write_report
    from craft_agent.llm import UsageMeter, create_llm_backend
    from craft_agent.masks import create_mask_engine

    try:
        if data is not None and not data.is_dir():
            raise CraftError(f"--data {data} is not a folder.", hint="pass a folder of sources like shared/data.")
        settings = settings_for(workspace, existing=False)
        detector_name, detector_checkpoint = detector_choice(settings, detector, checkpoint)
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
            )
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    write_report(report, out_file)
    if as_json:
        emit_json(report)
        raise typer.Exit(EXIT_OK)
    if report["backends"]:
        keys = [
            "gt_coverage",
            "mean_mask_iou",
            "type_accuracy",
            "triplet_precision",
            "triplets_per_change",
            "duplicate_expressions",
            "llm_calls_per_triplet",
            "pairs_per_min",
        ]
        table = Table(title=f"bench agent ({pairs} generated pairs, seed {seed}, {report['masks']} masks)")
        table.add_column("backend")
        for key in keys:
            table.add_column(key.replace("_", " "), justify="right")
        for name, metrics in report["backends"].items():
            table.add_row(name, *[str(metrics[k]) for k in keys])
        out.print(table)
    if report["sources"]:
        keys = [
            "pairs",
            "gt_objects",
            "triplets_per_pair",
            "precision",
            "instance_recall",
            "union_iou",
            "empty_pairs_ok",
            "type_accuracy",
        ]
        table = Table(title=f"bench agent on labelled sources (detector mode: {report['detector']})")
        table.add_column("source")
        table.add_column("mode")
        for key in keys:
            table.add_column(key.replace("_", " "), justify="right")
        for name, modes in report["sources"].items():
            if "error" in modes:
                table.add_row(name, "-", modes["error"])
                continue
            for mode, metrics in modes.items():
                table.add_row(name, mode, *["-" if metrics[k] is None else str(metrics[k]) for k in keys])
        out.print(table)
    out.print(f"report written to {out_file}")
    raise typer.Exit(EXIT_OK)


@audit_app.command("serve")
def audit_serve(
    workspace: WorkspaceOption = None,
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default: CRAFT_LABEL_STUDIO_PORT or a free one).")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Leave it running in the background; stop with `audit stop`.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the workspace's own Label Studio on 127.0.0.1 (installed in its own venv on first use)."""
    import signal
    import threading

    from craft_agent.audit.server import LocalLabelStudio
    from craft_agent.errors import AuditError

    try:
        settings = settings_for(workspace, existing=False, label_studio_port=port)
        if settings.label_studio_url:
            # An existing server is configured: nothing to start; say whether it answers and takes the token.
            from craft_agent.doctor import check_label_studio

            check = check_label_studio(settings, timeout=10)
            if check.status != "ok":
                raise AuditError(check.detail, hint=check.fix)
            if as_json:
                emit_json({"url": settings.label_studio_url, "existing_server": True})
            else:
                out.print(
                    f"using the existing server at {settings.label_studio_url} (CRAFT_LABEL_STUDIO_URL): {check.detail}"
                )
            raise typer.Exit(EXIT_OK)
        require_workspace(settings)  # a local server serves the workspace's images: it must be one
        server = LocalLabelStudio(settings)
        already = server.running()
        url = server.start(report=lambda message: err.print(message))
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    login = {
        "url": url,
        "username": server.credentials.username,
        "password_file": str(server.data_dir / "credentials.json"),
        "already_running": bool(already),
        "pid": (already.pid if already else server.process.pid if server.process else None),
        "log": str(server.log_path),
    }
    if as_json:
        emit_json(login)
    else:
        out.print(f"Label Studio is at [bold]{url}[/] (log: {server.log_path})")
        out.print(
            f"log in as [bold]{server.credentials.username}[/]; the password is in {login['password_file']} "
            "(owner-only), e.g. `python -c \"import json,sys; print(json.load(open(sys.argv[1]))['password'])\" "
            f"{login['password_file']}`"
        )
    if detach or already:
        if not as_json:
            out.print("running in the background; stop it with `craft-agent audit stop`.")
        raise typer.Exit(EXIT_OK)
    stop = threading.Event()
    for interrupt in (signal.SIGINT, signal.SIGTERM):
        signal.signal(interrupt, lambda *_: stop.set())
    if not as_json:
        out.print("press Ctrl-C to stop")
    while not stop.is_set() and server.process is not None and server.process.poll() is None:
        stop.wait(1.0)
    crashed = not stop.is_set()
    server.stop()
    if crashed:
        raise fail(
            AuditError(
                f"Label Studio exited on its own:\n{server.log_tail()}", hint=f"read {server.log_path} and serve again."
            ),
            as_json,
        )
    if not as_json:
        err.print("Label Studio stopped.")
    raise typer.Exit(EXIT_OK)


@audit_app.command("stop")
def audit_stop(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Stop the workspace's Label Studio started by `audit serve --detach`."""
    from craft_agent.audit.server import LocalLabelStudio

    try:
        stopped = LocalLabelStudio(settings_for(workspace)).stop()
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"stopped": stopped})
    else:
        out.print("Label Studio stopped." if stopped else "no Label Studio server was running for this workspace.")
    raise typer.Exit(EXIT_OK)


@audit_app.command("push")
def audit_push(
    workspace: WorkspaceOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Tasks per bulk import request.")] = 250,
    retry_s: Annotated[float, typer.Option(help="How long to wait for a server that drops mid-push.")] = 120,
    as_json: JsonOption = False,
) -> None:
    """Send drafted triplets to Label Studio for audit (bulk, idempotent: never duplicates a task)."""
    from craft_agent.audit.label_studio import LabelStudioAudit
    from craft_agent.catalog import Catalog

    try:
        settings = settings_for(workspace)
        backend = LabelStudioAudit(settings)
        with Catalog.from_settings(settings) as catalog, progress_bar("push", not as_json) as update:
            state = {"done": 0, "total": 0}

            def on_total(total: int) -> None:
                state["total"] = total

            def advance(n: int) -> None:
                state["done"] += n
                update(state["done"], state["total"], "")

            summary = backend.push(catalog, batch_size=batch_size, retry_s=retry_s, progress=advance, on_total=on_total)
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    payload = {**summary.__dict__, "images": backend.image_mode}
    if as_json:
        emit_json(payload)
    else:
        out.print(
            f"[bold green]{summary.imported}[/] imported, {summary.updated} updated, {summary.unchanged} already "
            f"there; {summary.queued} triplet(s) moved to the audit queue ({summary.seconds:.1f} s)"
        )
        out.print(f"audit at {summary.url}/projects/{summary.project_id}/data")
        if summary.duplicates:
            out.print(f"[yellow]{len(summary.duplicates)} triplet(s) have more than one task in the project[/]")
    raise typer.Exit(EXIT_OK)


@audit_app.command("pull")
def audit_pull(
    workspace: WorkspaceOption = None,
    policy: Annotated[
        str | None, typer.Option(help="Several annotations of a task: first, majority or two_agree.")
    ] = None,
    retry_s: Annotated[float, typer.Option(help="How long to wait for a server that drops mid-pull.")] = 120,
    as_json: JsonOption = False,
) -> None:
    """Read auditors' verdicts, edited texts and repainted masks into the catalog (safe to repeat)."""
    from craft_agent.audit.label_studio import LabelStudioAudit
    from craft_agent.catalog import Catalog

    try:
        settings = settings_for(workspace, audit_policy=policy)
        backend = LabelStudioAudit(settings)
        with Catalog.from_settings(settings) as catalog:
            summary = backend.pull(catalog, retry_s=retry_s)
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({**summary.__dict__, "failures": [{"input": i, "error": e} for i, e in summary.failures]})
    else:
        moved = ", ".join(f"{n} {state}" for state, n in sorted(summary.moved.items())) or "none"
        out.print(
            f"{summary.annotations} annotation(s) on {summary.tasks} task(s): {summary.new_records} new, "
            f"{summary.updated_records} updated, {summary.removed_records} removed; moved: {moved}; "
            f"{summary.undecided} undecided ({summary.seconds:.1f} s)"
        )
        if summary.unknown_tasks:
            out.print(f"[yellow]{summary.unknown_tasks} task(s) name triplets this catalog does not have[/]")
        for name, error in summary.failures:
            out.print(f"  [red]x[/] {name}\n    {error}", highlight=False)
    raise typer.Exit(EXIT_PARTIAL if summary.failures else EXIT_OK)


@audit_app.command("status")
def audit_status_command(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Audit progress: triplets per state, acceptance and edit rates, per-auditor throughput."""
    from craft_agent.audit.status import audit_status
    from craft_agent.catalog import Catalog

    try:
        settings = settings_for(workspace)
        with Catalog.from_settings(settings) as catalog:
            status = audit_status(catalog)
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json(status)
        raise typer.Exit(EXIT_OK)
    states = ", ".join(f"{n} {state}" for state, n in status["states"].items())
    out.print(f"{status['triplets']} triplet(s): {states}")

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f} %"

    out.print(
        f"acceptance {percent(status['acceptance_rate'])}, edited {percent(status['edit_rate'])}, "
        f"median time per task {status['time_per_task']['median_s'] or '-'} s"
    )
    if status["auditors"]:
        table = Table(title="auditors")
        for column in ("auditor", "audits", "accepted", "fixed", "rejected", "needs fix", "median s", "per hour"):
            table.add_column(column, justify="left" if column == "auditor" else "right")
        for name, row in status["auditors"].items():
            table.add_row(
                name,
                *[
                    str(row[k] if row[k] is not None else "-")
                    for k in ("audits", "accepted", "fixed", "rejected", "needs_fix", "median_s", "per_hour")
                ],
            )
        out.print(table)
    raise typer.Exit(EXIT_OK)


@bench_app.command("audit")
def bench_audit(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the JSON report.")],
    triplets: Annotated[int, typer.Option(min=6, help="Triplets to push, audit and pull.")] = 1000,
    batch_size: Annotated[int, typer.Option(min=1, help="Tasks per bulk import request.")] = 250,
    as_json: JsonOption = False,
) -> None:
    """Push and pull rates against a real Label Studio (a temporary local one unless configured)."""
    from craft_agent.bench.audit import run_audit_bench
    from craft_agent.bench.vision import write_report

    try:
        settings = settings_for(None, existing=False)
        report = run_audit_bench(settings, triplets=triplets, batch_size=batch_size, report=lambda m: err.print(m))
    except CraftError as exc:
        raise fail(exc, as_json) from exc
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
        out.print(f"report written to {out_file}")
    raise typer.Exit(EXIT_OK if report["roundtrip_exact"] else EXIT_PARTIAL)


@app.command("export")
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
    from craft_agent.export.base import ExportOptions
    from craft_agent.export.samples import SplitConfig

    try:
        try:
            parts = tuple(float(p) for p in ratios.split(","))
            assert len(parts) == 3
            splits = SplitConfig(ratios=parts, seed=seed)
        except (ValueError, AssertionError) as exc:
            raise ConfigError(
                f"--ratios {ratios!r} is not three ratios summing to 1.", hint="e.g. --ratios 0.8,0.1,0.1"
            ) from exc
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
    except CraftError as exc:
        raise fail(exc, as_json) from exc
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
        if summary.unaudited_preview:
            out.print("[yellow]UNAUDITED PREVIEW: marked as such in the manifest and UNAUDITED_PREVIEW.txt[/]")
    raise typer.Exit(EXIT_OK)


@app.command("validate")
def validate_command(
    export_dir: Annotated[Path, typer.Argument(help="An export folder written by `craft-agent export`.")],
    as_json: JsonOption = False,
) -> None:
    """Check an export: structure, every file's checksum, every mask, and the counts. Exit 1 on any problem."""
    from craft_agent.errors import ConfigError
    from craft_agent.export import validate

    if not export_dir.is_dir():
        problem = "is a file, not an export folder" if export_dir.exists() else "does not exist"
        raise fail(
            ConfigError(f"{export_dir} {problem}.", hint="pass the folder written by `craft-agent export --out`."),
            as_json,
        )
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


@app.command("import")
def import_command(
    src: Annotated[Path, typer.Argument(help="An MTRefSeg-layout dataset (a split, or a folder of splits).")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read an existing MTRefSeg-layout dataset into the catalog as accepted triplets, to extend it."""
    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.export.importer import import_mtrefseg
    from craft_agent.imagery import IngestOptions

    try:
        settings = settings_for(workspace, existing=False)
        with Catalog.from_settings(settings) as catalog:
            summary = import_mtrefseg(src, catalog, ImageStore(settings.workspace), IngestOptions())
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json(summary.to_json())
    else:
        out.print(
            f"[bold green]{summary.new_triplets}[/] new triplet(s) ({summary.triplets} in the source) on "
            f"{summary.pairs} pair(s), {summary.new_pairs} new; {len(summary.failed)} failed ({summary.seconds:.1f} s)"
        )
        print_failures(summary.failed)
    raise typer.Exit(EXIT_PARTIAL if summary.failed else EXIT_OK)


@bench_app.command("export")
def bench_export(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the JSON report.")],
    pairs: Annotated[int, typer.Option(min=1, help="Generated pairs in the exported dataset.")] = 32,
    size: Annotated[int, typer.Option(min=64, help="Side of the generated images (px).")] = 1024,
    formats: Annotated[list[str] | None, typer.Option("--format", help="Formats to export (default: all).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Export throughput in MB/s next to a plain tar of the same bytes (target ratio >= 0.5)."""
    from craft_agent.bench.export import run_export_bench
    from craft_agent.bench.vision import write_report

    try:
        report = run_export_bench(pairs=pairs, size=size, formats=formats or None)
    except CraftError as exc:
        raise fail(exc, as_json) from exc
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


@bench_app.command("big-scene")
def bench_big_scene(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the JSON report.")],
    side: Annotated[int, typer.Option(min=256, help="Side of the scene (px); a Sentinel-2 tile is 10980.")] = 10980,
    as_json: JsonOption = False,
) -> None:
    """Peak memory (RSS) of ingesting a generated 4-band uint16 GeoTIFF pair of one Sentinel-2 tile (< 2048 MB)."""
    from craft_agent.bench.big_scene import run_big_scene_bench
    from craft_agent.bench.vision import write_report

    try:
        report = run_big_scene_bench(side=side, report=lambda line: err.print(line))
    except CraftError as exc:
        raise fail(exc, as_json) from exc
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


@llm_app.command("serve-local")
def llm_serve_local(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
) -> None:
    """Serve SmolLM2-135M-Instruct on 127.0.0.1 (an OpenAI-compatible endpoint; install with `make local-llm`)."""
    from craft_agent.llm.local import LOCAL_MODEL_ALIAS, start_local_llm

    try:
        process, base_url = start_local_llm(port)
    except CraftError as exc:
        raise fail(exc, False) from exc
    out.print(f"serving at {base_url}; use CRAFT_LLM_BASE_URL={base_url} CRAFT_LLM_MODEL={LOCAL_MODEL_ALIAS}")
    out.print("press Ctrl-C to stop")
    try:
        process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait(timeout=20)
    raise typer.Exit(EXIT_OK)


@app.command("train")
def train_command(
    data: Annotated[
        list[Path], typer.Option("--data", help="Source folder with change masks, or a workspace; repeat for several.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder: change.pt, metrics.jsonl, predictions.png.")],
    stage: Annotated[str, typer.Option(help="What to train: change (the learned change proposer).")] = "change",
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
    as_json: JsonOption = False,
) -> None:
    """Train a network: the learned change proposer from pairs with change masks (offline, from scratch)."""
    try:
        if stage != "change":
            raise CraftError(
                f"--stage {stage!r} cannot be trained yet.",
                hint="use --stage change; the referring segmenter (refer) comes in a later release.",
            )
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
    except CraftError as exc:
        raise fail(exc, as_json) from exc
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


@bench_app.command("change")
def bench_change(
    data: Annotated[Path, typer.Option(help="Folder of sources (sub-folders with pre/ post/ mask/).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the JSON report.")],
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

    try:
        if not data.is_dir():
            raise CraftError(f"--data {data} is not a folder.", hint="pass a folder of sources like shared/data.")
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
    except CraftError as exc:
        raise fail(exc, as_json) from exc
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


@bench_app.command("reliability")
def bench_reliability(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the JSON report.")],
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
    import tempfile

    from craft_agent.bench.reliability import run_reliability_bench
    from craft_agent.bench.vision import write_report

    with contextlib.ExitStack() as stack:
        folder = scratch or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="craft-reliability-")))
        if scratch and scratch.exists() and any(scratch.iterdir()):
            raise fail(CraftError(f"--scratch {scratch} is not empty.", hint="pass a new or empty folder."), as_json)
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


@bench_app.command("flows")
def bench_flows(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the JSON report.")],
    pairs: Annotated[int, typer.Option(min=1, help="Generated pairs drafted each way.")] = 20,
    size: Annotated[int, typer.Option(min=64, help="Side of the generated pairs (px).")] = 256,
    workers: Annotated[int, typer.Option(min=1, help="Dask worker processes.")] = 2,
    as_json: JsonOption = False,
) -> None:
    """The same pairs drafted by the plain loop, by the flow on threads and on Dask: times and identical ids."""
    import tempfile

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


FLOW_NAMES = ("generate", "audit-sync", "export", "craft")


@flows_app.command("serve")
def flows_serve(
    workspace: WorkspaceOption = None,
    watch: Annotated[Path | None, typer.Option(help="Imagery folder ingested at each scheduled regeneration.")] = None,
    cron: Annotated[str | None, typer.Option(help="Cron schedule of the regeneration, e.g. '*/15 * * * *'.")] = None,
    every: Annotated[
        float | None, typer.Option(min=1, help="Seconds between regenerations (when --cron is not given).")
    ] = None,
    audit_every: Annotated[float, typer.Option(min=0, help="Seconds between audit syncs (0: none).")] = 300,
    export_to: Annotated[Path | None, typer.Option(help="Export folder of the export and craft flows.")] = None,
    llm: Annotated[str | None, typer.Option(help="LLM backend of the regeneration.")] = None,
    masks: Annotated[str | None, typer.Option(help="Mask engine of the regeneration.")] = None,
    port: Annotated[int | None, typer.Option(help="Port of the local Prefect server (default: kept, or free).")] = None,
) -> None:
    """Start the workspace's Prefect server on 127.0.0.1 (or use PREFECT_API_URL) and serve the deployments
    (scheduled regeneration on --watch, audit sync); runs until stopped (Ctrl-C)."""
    import os

    from craft_agent.orchestration import LocalPrefectServer, configure_prefect
    from craft_agent.pipeline import DraftOptions

    try:
        settings = settings_for(workspace, existing=watch is None)
        settings.workspace.mkdir(parents=True, exist_ok=True)
        configure_prefect(settings)
        if not os.environ.get("PREFECT_API_URL"):
            server = LocalPrefectServer(settings, port)
            os.environ["PREFECT_API_URL"] = server.start()
            err.print(f"Prefect server: {server.url.removesuffix('/api')} (log: {server.log_path})")
        os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
        import prefect

        from flows.deployments import build_deployments

        deployments = build_deployments(
            str(settings.workspace.resolve()),
            watch=str(watch.resolve()) if watch else None,
            cron=cron,
            every_s=every,
            audit_every_s=audit_every or None,
            options=DraftOptions(llm=llm, masks=masks),
            export_to=str(export_to.resolve()) if export_to else None,
        )
    except CraftError as exc:
        raise fail(exc, False) from exc
    prefect.serve(*deployments, print_starting_message=True)
    raise typer.Exit(EXIT_OK)


@flows_app.command("run")
def flows_run(
    name: Annotated[str, typer.Argument(help="generate, audit-sync, export or craft.")],
    workspace: WorkspaceOption = None,
    source: Annotated[Path | None, typer.Option(help="Imagery to ingest first (generate, craft).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Export folder (export, craft).")] = None,
    engine: Annotated[str, typer.Option(help="threads or dask (generate).")] = "threads",
    workers: Annotated[int, typer.Option(min=1, help="Concurrent pairs: threads or Dask workers.")] = 4,
    dask_address: Annotated[str | None, typer.Option(help="A Dask scheduler (default: a LocalCluster).")] = None,
    llm: Annotated[str | None, typer.Option(help="LLM backend.")] = None,
    masks: Annotated[str | None, typer.Option(help="Mask engine.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Run one flow now (on PREFECT_API_URL when set, else on Prefect's temporary local server)."""
    from craft_agent.orchestration import configure_prefect
    from craft_agent.pipeline import DraftOptions

    try:
        if name not in FLOW_NAMES:
            raise CraftError(f"unknown flow {name!r}.", hint=f"use one of: {', '.join(FLOW_NAMES)}.")
        if name == "export" and out_dir is None:
            raise CraftError("the export flow needs --out.", hint="pass --out DIR.")
        settings = settings_for(workspace, existing=source is None)
        configure_prefect(settings)
        root = str(settings.workspace.resolve())
        options = DraftOptions(llm=llm, masks=masks)
        if name == "generate":
            from flows.generate import generate_flow, task_runner

            runner = generate_flow.with_options(task_runner=task_runner(engine, workers, dask_address))
            result = runner(root, source=str(source) if source else None, options=options)
        elif name == "audit-sync":
            from flows.audit import audit_sync_flow

            result = audit_sync_flow(root)
        elif name == "export":
            from flows.export import export_flow

            result = export_flow(root, str(out_dir))
        else:
            from flows.craft import craft_flow

            export_to = str(out_dir) if out_dir else None
            result = craft_flow(root, source=str(source) if source else None, options=options, export_to=export_to)
    except CraftError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json(result)
    else:
        out.print_json(json.dumps(result, default=str))
    raise typer.Exit(EXIT_OK)


@flows_app.command("stop")
def flows_stop(workspace: WorkspaceOption = None) -> None:
    """Stop the workspace's local Prefect server."""
    from craft_agent.orchestration import LocalPrefectServer

    stopped = LocalPrefectServer(settings_for(workspace)).stop()
    out.print("stopped the Prefect server" if stopped else "no Prefect server was running for this workspace")
    raise typer.Exit(EXIT_OK)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
