"""The workspace and its helpers: ``catalog info/remove``, ``doctor``, ``schema``, ``examples make``, ``llm``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from craft_agent.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    JsonOption,
    WorkspaceOption,
    emit_json,
    handled,
    out,
    settings_for,
)


@handled
def catalog_info(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Counts of pairs, scene groups, candidates, triplets per state, audits and interrupted runs."""
    from craft_agent.catalog import Catalog

    with Catalog.from_settings(settings_for(workspace)) as catalog:
        info = catalog.info()
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


@handled
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


@handled
def doctor(
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check what is configured and reachable (LLM, SAM checkpoint, Label Studio, catalog), with fixes."""
    from craft_agent.doctor import run_checks

    checks = run_checks(settings_for(workspace, existing=False))
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


@handled
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


@handled
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

    summary = write_examples(out_dir, pairs=pairs, seed=seed, size=size, street_fraction=street_fraction)
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


@handled
def llm_serve_local(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
) -> None:
    """Serve SmolLM2-135M-Instruct on 127.0.0.1 (an OpenAI-compatible endpoint; install with `make local-llm`)."""
    from craft_agent.llm.local import LOCAL_MODEL_ALIAS, start_local_llm

    process, base_url = start_local_llm(port)
    out.print(f"serving at {base_url}; use CRAFT_LLM_BASE_URL={base_url} CRAFT_LLM_MODEL={LOCAL_MODEL_ALIAS}")
    out.print("press Ctrl-C to stop")
    try:
        process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait(timeout=20)
    raise typer.Exit(EXIT_OK)
