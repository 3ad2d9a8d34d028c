"""What every command module shares: the consoles, exit codes, option types and the error wrapper.

Every command accepts ``--json`` and then prints exactly one JSON object on stdout (progress and messages
go to stderr). Exit status: 0 when everything worked, 1 when the run completed but some inputs failed
(they are listed with reasons), 2 when the command could not run at all (bad arguments, unusable source).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ParamSpec

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from craft_agent.errors import CraftError
from craft_agent.settings import Settings, load_settings, require_workspace

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_FAILED = 2

# soft_wrap: messages are not broken into lines at 80 columns; a path or a command in a hint stays whole
# and copyable in a log or a pipe (a terminal wraps long lines by itself)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

WorkspaceOption = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Workspace folder (catalog, images, caches). Env: CRAFT_WORKSPACE."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON summary on stdout.")]
MasksOption = Annotated[str | None, typer.Option(help="Mask engine: classical or sam (default: sam if configured).")]
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
CategoriesOption = Annotated[
    str | None,
    typer.Option(
        help="Draft only changes of these categories, comma-separated (building, roof, vegetation, vehicle, water, "
        "ground, road, facade, object): for a building-change dataset, building. Default: all."
    ),
]
GroupsOption = Annotated[
    bool,
    typer.Option(
        "--groups/--no-groups",
        help='Also draft one multi-target triplet per kind of change a pair has several of ("the new buildings"). '
        "On a crowded tile the learned detector's group may hold changes the agent could not review one by one; "
        "it is then marked uncorrected.",
    ),
]
ReportOption = Annotated[Path, typer.Option("--out", help="Where to write the JSON report.")]
CheckpointOption = Annotated[
    Path | None, typer.Option(help="The learned detector's checkpoint (RUN/change.pt from `train --stage change`).")
]

P = ParamSpec("P")


def handled(command: Callable[P, None]) -> Callable[P, None]:
    """Wrap a command so that a :class:`CraftError` ends it with its message and exit status 2.

    The message goes out as ``{"error", "fix"}`` on stdout when the command was called with ``as_json``
    (a command without that option reports on the console). Anything else, ``typer.Exit`` and
    ``typer.BadParameter`` included, passes through unchanged.
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except CraftError as exc:
            raise fail(exc, bool(kwargs.get("as_json", False))) from exc

    return run


def fail(error: CraftError, as_json: bool) -> typer.Exit:
    """Report an error that stopped the whole command and return the exit to raise."""
    if as_json:
        emit_json({"error": error.message, "fix": error.hint})
    else:
        err.print(f"[bold red]error:[/] {error.message}")
        if error.hint:
            err.print(f"[yellow]fix:[/] {error.hint}")
    return typer.Exit(EXIT_FAILED)


def emit_json(payload: dict[str, Any]) -> None:
    """Write the command's JSON summary as one line on stdout."""
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


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


def parse_categories(text: str | None) -> list[str] | None:
    """``--categories building,roof`` as category names (None: all).

    Raises:
        typer.BadParameter: naming a word that is not a category, and the ones there are.
    """
    from craft_agent.models import Category

    if text is None:
        return None
    words = [w.strip() for w in text.split(",") if w.strip()]
    unknown = [w for w in words if w.lower() not in set(Category)]
    if unknown or not words:
        named = f"{', '.join(map(repr, unknown))} {'are not categories' if len(unknown) > 1 else 'is not a category'}"
        raise typer.BadParameter(
            f"{named if unknown else 'no category given'}; use one or more of {', '.join(Category)}, comma-separated.",
            param_hint="--categories",
        )
    return list(dict.fromkeys(w.lower() for w in words))


def require_sources(data: Path | None) -> None:
    """Refuse a ``--data`` that is not a folder of sources, or holds none in a layout ``ingest`` reads (``None``,
    no ``--data``, passes): a benchmark that silently scored nothing of it would look like one that did."""
    if data is None:
        return
    if not data.is_dir():
        raise CraftError(f"--data {data} is not a folder.", hint="pass a folder of sources like shared/data.")
    from craft_agent.bench.vision import source_folders  # GDAL (rasterio): only when a benchmark reads data

    if next(source_folders(data), None) is None:
        raise CraftError(
            f"--data {data} holds no source folder in a layout ingest reads.",
            hint="pass a folder whose sub-folders are sources (pre/ post/ mask/, A/ B/ label/, im1/ im2/, "
            "Image1/ Image2/, a manifest, an MTRefSeg split, or such folders under train/ val/ test/), or one "
            "such source.",
        )


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


def print_beyond_resolution(pairs: dict[str, float], model_gsd_m: float | None) -> None:
    """A yellow warning on stderr for pairs the learned detector saw at a resolution it was not trained for."""
    if not pairs or not model_gsd_m:
        return
    low, high = min(pairs.values()), max(pairs.values())
    sizes = f"{low:.3g}" if f"{low:.3g}" == f"{high:.3g}" else f"{low:.3g}-{high:.3g}"
    names = ", ".join(sorted(pairs)[:5]) + (f" and {len(pairs) - 5} more" if len(pairs) > 5 else "")
    err.print(
        f"[bold yellow]warning:[/] {len(pairs)} pair(s) at {sizes} m per pixel ({names}): the learned detector was "
        f"trained at {model_gsd_m:g} m and cannot be resampled that far, so it saw them at their own resolution, "
        "which it never learned; their drafts are unreliable. Use --detector classical for them, or train a "
        "checkpoint on imagery of that resolution.",
        highlight=False,
        soft_wrap=True,
    )


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
