"""The ``craft-agent`` command line (typer + rich): :data:`app`, run by :func:`main`.

Each command is a plain function in a module of this package (its options, its logic, its output), wrapped
by :func:`~craft_agent.cli.common.handled` for the shared error, JSON and exit-code handling (see
``common``). This file only assembles them: the groups and the command names, in the order ``--help`` lists
them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from craft_agent import __version__
from craft_agent.cli import (
    audit,
    bench,
    bench_systems,
    catalog,
    export,
    flows,
    ingest,
    ml_backend,
    pipeline,
    refer,
    train,
)
from craft_agent.cli.common import EXIT_OK, out

app = typer.Typer(
    name="craft-agent",
    help="Build Multi-temporal Referring Segmentation datasets: ingest image pairs, find changes, "
    "draft referring expressions and masks, audit them in Label Studio, export shards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


def _group(help_text: str) -> typer.Typer:
    """A command group that prints its help when called without a command."""
    return typer.Typer(help=help_text, no_args_is_help=True)


app.command()(ingest.ingest)
app.command()(pipeline.candidates)
app.command()(pipeline.generate)
app.command()(catalog.doctor)
app.command()(catalog.schema)
app.command("preview")(pipeline.preview_command)
app.command("export")(export.export_command)
app.command("validate")(export.validate_command)
app.command("import")(export.import_command)
app.command("train")(train.train_command)
app.command("eval")(refer.eval_command)

audit_app = _group("Human audit in Label Studio: serve, push, pull, status (see auditing/GUIDE.md).")
audit_app.command("serve")(audit.audit_serve)
audit_app.command("stop")(audit.audit_stop)
audit_app.command("invite")(audit.audit_invite)
audit_app.command("push")(audit.audit_push)
audit_app.command("pull")(audit.audit_pull)
audit_app.command("status")(audit.audit_status_command)
audit_app.command("ml-backend")(ml_backend.audit_ml_backend)
app.add_typer(audit_app, name="audit")

llm_app = _group("Language-model helpers.")
llm_app.command("serve-local")(catalog.llm_serve_local)
app.add_typer(llm_app, name="llm")

examples_app = _group("Example data made by the project (synthetic bi-temporal scenes).")
examples_app.command("make")(catalog.examples_make)
app.add_typer(examples_app, name="examples")

catalog_app = _group("Look into the catalog.")
catalog_app.command("info")(catalog.catalog_info)
catalog_app.command("remove")(catalog.catalog_remove)
app.add_typer(catalog_app, name="catalog")

bench_app = _group("Benchmarks that print and save figures.")
bench_app.command("vision")(bench.bench_vision)
bench_app.command("agent")(bench.bench_agent)
bench_app.command("audit")(bench_systems.bench_audit)
bench_app.command("export")(bench_systems.bench_export)
bench_app.command("big-scene")(bench_systems.bench_big_scene)
bench_app.command("change")(train.bench_change)
bench_app.command("reliability")(bench_systems.bench_reliability)
bench_app.command("flows")(bench_systems.bench_flows)
bench_app.command("train")(refer.bench_train)
app.add_typer(bench_app, name="bench")

flows_app = _group("Prefect flows: a local Prefect server with scheduled regeneration and audit sync.")
flows_app.command("serve")(flows.flows_serve)
flows_app.command("run")(flows.flows_run)
flows_app.command("stop")(flows.flows_stop)
app.add_typer(flows_app, name="flows")


def main() -> None:
    """Console-script entry point."""
    app()
