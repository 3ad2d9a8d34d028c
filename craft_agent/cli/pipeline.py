"""The drafting stages and their review: ``candidates``, ``generate`` and ``preview``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from craft_agent.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    CategoriesOption,
    CheckpointOption,
    DetectorOption,
    GroupsOption,
    JsonOption,
    MasksOption,
    ProposalsOption,
    SnapOption,
    WorkspaceOption,
    emit_json,
    err,
    handled,
    out,
    parse_categories,
    print_beyond_resolution,
    print_failures,
    progress_bar,
    settings_for,
)


@handled
def candidates(
    workspace: WorkspaceOption = None,
    masks: MasksOption = None,
    redo: Annotated[bool, typer.Option(help="Also process pairs that already have candidates.")] = False,
    proposals: ProposalsOption = "auto",
    detector: DetectorOption = None,
    checkpoint: CheckpointOption = None,
    snap: SnapOption = False,
    as_json: JsonOption = False,
) -> None:
    """Find change candidates in every ingested pair and segment them (resumable: done pairs are skipped)."""
    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.change import choose_detector
    from craft_agent.change.stage import propose_candidates
    from craft_agent.masks import create_mask_engine

    settings = settings_for(workspace)
    engine = create_mask_engine(settings, masks)
    detector_name, detector_checkpoint = choose_detector(settings, detector, checkpoint)
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
    print_beyond_resolution(summary.beyond_model_resolution, summary.model_gsd_m)  # stderr, with --json too
    raise typer.Exit(EXIT_PARTIAL if summary.failed else EXIT_OK)


@handled
def generate(
    workspace: WorkspaceOption = None,
    llm: Annotated[
        str | None,
        typer.Option(help="Language model: offline or openai (default: openai if CRAFT_LLM_BASE_URL is set)."),
    ] = None,
    masks: MasksOption = None,
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
    categories: CategoriesOption = None,
    groups: GroupsOption = True,
    as_json: JsonOption = False,
) -> None:
    """Run the CRAFT agent over the ingested pairs and draft triplets (resumable, never duplicates)."""
    from craft_agent.agent.run import generate as run_generate
    from craft_agent.catalog import Catalog, ImageStore
    from craft_agent.llm import UsageMeter, create_llm_backend
    from craft_agent.masks import create_mask_engine
    from craft_agent.pipeline import DraftOptions

    settings = settings_for(workspace)
    backend = create_llm_backend(settings, llm, usage=UsageMeter(budget_usd, budget_tokens))
    engine = create_mask_engine(settings, masks)
    # the flows' options, resolved as a flow resolves them: one mapping from options to the agent's config
    config = (
        DraftOptions(
            detector=detector,
            checkpoint=str(checkpoint) if checkpoint else None,
            proposals=proposals,
            snap=snap,
            max_rounds=max_rounds,
            expressions=expressions,
            no_target_ratio=no_target_ratio,
            budget=budget,
            categories=parse_categories(categories),
            groups=groups,
        )
        .for_workspace(settings)
        .agent_config()
    )
    with Catalog.from_settings(settings) as catalog, progress_bar("generate", not as_json) as update:
        summary = run_generate(
            catalog, ImageStore(settings.workspace), backend, engine, settings.workspace, config, progress=update
        )
    if as_json:
        emit_json(summary.to_json())
    else:
        cost = f"${summary.cost_usd:.4f}" if summary.cost_known else "cost unknown (no price for the model)"
        out.print(
            f"[bold green]{summary.triplets}[/] triplet(s) drafted ({summary.new_triplets} new, "
            f"{summary.uncorrected} uncorrected) from "
            f"{summary.pairs} pair(s); {summary.skipped} already done, {summary.resumed} resumed, "
            f"[{'red' if summary.failed else 'green'}]{len(summary.failed)} failed[/]; "
            f"{summary.llm_calls} LLM call(s), {cost} ({summary.seconds:.1f} s)"
        )
        if summary.rejected:
            # what the review turned down, what --categories left out and what was merged as another target's
            # object: a user sees why a change is missing
            turned_down = ", ".join(f"{name} {count}" for name, count in sorted(summary.rejected.items()))
            out.print(f"left out: {turned_down}", highlight=False)
        if summary.fallbacks:
            reasons = ", ".join(f"{name} {count}" for name, count in sorted(summary.fallback_reasons.items()))
            out.print(
                f"[yellow]{summary.fallbacks} of {summary.llm_steps} {summary.llm_backend} step(s) fell back to the "
                f"offline backend ({reasons}); their triplets say so in provenance.steps.[/]"
            )
        if summary.revised or summary.left_with_auditors:
            out.print(
                f'auditors\' "needs fix": {summary.revised} triplet(s) revised (push them with `audit push`), '
                f"{summary.left_with_auditors} left with the auditors after the last allowed revision"
            )
        if summary.stopped_by_budget:
            out.print("[yellow]stopped: the LLM budget is spent; re-run with a larger budget to go on.[/]")
        print_failures(summary.failed)
    print_beyond_resolution(summary.beyond_model_resolution, summary.model_gsd_m)  # stderr, with --json too
    if summary.mostly_fallbacks:
        err.print(
            f"[bold red]warning: {summary.fallbacks} of {summary.llm_steps} steps were not made by "
            f"{summary.llm_backend} but by the offline fallback: this run's triplets are mostly offline drafts.[/] "
            "Check the endpoint, the model (structured output, images) and the failures above, then re-run."
        )
    raise typer.Exit(EXIT_PARTIAL if summary.failed or summary.mostly_fallbacks else EXIT_OK)


@handled
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
