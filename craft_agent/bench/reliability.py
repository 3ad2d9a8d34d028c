"""``craft-agent bench reliability``: bounded, local-only fault injection, with the figures it finds.

Every part runs the real command line in child processes on generated example data in a scratch folder,
and compares what survives a fault with what an undisturbed run makes:

- ``kills``: ``kill -9`` of ``generate``, ``ingest`` and ``export`` at random moments (seeded), each
  followed by a re-run. ``lost`` counts what the undisturbed run has and the re-run does not;
  ``duplicates`` what appears more than once or is not in the undisturbed run; ``corrupt`` catalogs that
  fail SQLite's integrity check; for exports, a partial export that looks complete, and staging folders
  left behind after the next export.
- ``label_studio_restart``: the local Label Studio server killed and restarted in the middle of ``audit
  push`` and of ``audit pull``; the tasks and audits must all arrive, once.
- ``llm_faults``: ``generate --llm openai`` against the scripted OpenAI-compatible server, which answers a
  share of requests with 429, 500, a timeout, malformed JSON, a truncated body or a refusal.
- ``bad_inputs``: kinds of bad input and user mistakes; each must end in a clear error (or warning) that
  names the input, never a traceback.
- ``secrets``: the API key and the Label Studio credentials of the runs above, searched for in every file
  they left (catalogs, caches, logs, exports, the server's data).
- ``label_studio_security``: what the local server exposes.

``quick=True`` is the CI-sized variant (fewer pairs and trials); the report says which ran.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from craft_agent.bench.llm_server import Refusal, Reply, ScriptedLLMServer, Status, Truncated, cooperative_answer
from craft_agent.settings import CATALOG_FILENAME

Progress = Callable[[str, int, int], None]
"""Called as (part, parts done, parts in all)."""


@dataclass(frozen=True)
class Scale:
    """How much of each fault to inject."""

    generate_pairs: int
    generate_kills: int
    ingest_pairs: int
    ingest_kills: int
    export_kills: int
    llm_pairs: int
    image_size: int


FULL = Scale(
    generate_pairs=20,
    generate_kills=10,
    ingest_pairs=20,
    ingest_kills=3,
    export_kills=5,
    llm_pairs=6,
    image_size=256,
)
QUICK = Scale(
    generate_pairs=3, generate_kills=2, ingest_pairs=4, ingest_kills=1, export_kills=2, llm_pairs=2, image_size=128
)


class Cli:
    """Runs ``python -m craft_agent`` in child processes with a clean ``CRAFT_*`` environment."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CRAFT_", "LABEL_STUDIO_"))}
        self.env = {**base, **(env or {})}

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "craft_agent", *args]

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout
        )

    def timed(self, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        done = self.run(*args, env=env)
        return done, time.monotonic() - started

    def killed_at(self, delay_s: float, *args: str, env: dict[str, str] | None = None) -> bool:
        """Start the command, ``kill -9`` it (and its children) after ``delay_s``; True when it was still running."""
        process = subprocess.Popen(
            self.command(*args),
            env={**self.env, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            process.wait(timeout=delay_s)
            return False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True


def catalog_ok(workspace: Path) -> bool:
    """SQLite's integrity check of the workspace catalog."""
    path = workspace / CATALOG_FILENAME
    if not path.is_file():
        return True
    with sqlite3.connect(path) as connection:
        return bool(connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok")


def _rows(workspace: Path, query: str) -> list[str]:
    path = workspace / CATALOG_FILENAME
    if not path.is_file():
        return []
    with sqlite3.connect(path) as connection:
        return [str(row[0]) for row in connection.execute(query)]


def triplet_ids(workspace: Path) -> list[str]:
    return _rows(workspace, "SELECT id FROM triplets")


def pair_keys(workspace: Path) -> list[str]:
    """One key per pair row: its name (a pair ingested twice shows up twice)."""
    return _rows(workspace, "SELECT name FROM pairs")


def _compare(reference: list[str], got: list[str]) -> tuple[int, int]:
    """(lost, duplicates) of ``got`` against ``reference``."""
    wanted = set(reference)
    duplicates = len(got) - len(set(got)) + len(set(got) - wanted)
    return len(wanted - set(got)), duplicates


def _delays(rng: random.Random, count: int, duration_s: float) -> list[float]:
    """Kill moments spread over an undisturbed run's duration (start-up included), in random order."""
    return [duration_s * (0.05 + 0.9 * (index + rng.random()) / count) for index in rng.sample(range(count), count)]


# Kills ---------------------------------------------------------------------------------------------------


def kill_generate(cli: Cli, scratch: Path, scale: Scale, rng: random.Random) -> dict[str, Any]:
    from craft_agent.synthetic import write_examples

    examples = scratch / "generate-examples"
    write_examples(examples, pairs=scale.generate_pairs, seed=11, size=scale.image_size)
    ingested = scratch / "generate-ingested"
    _must(cli.run("ingest", str(examples), "-w", str(ingested), "--json"), "ingest the examples")
    reference = scratch / "generate-reference"
    shutil.copytree(ingested, reference)
    _, duration = cli.timed("generate", "-w", str(reference), "--json")
    expected = triplet_ids(reference)
    result = {"trials": 0, "interrupted": 0, "lost": 0, "duplicates": 0, "resumed": 0, "corrupt": 0}
    for index, delay in enumerate(_delays(rng, scale.generate_kills, duration)):
        workspace = scratch / f"generate-kill-{index}"
        shutil.copytree(ingested, workspace)
        result["interrupted"] += cli.killed_at(delay, "generate", "-w", str(workspace), "--json")
        result["corrupt"] += not catalog_ok(workspace)
        rerun = cli.run("generate", "-w", str(workspace), "--json")
        lost, duplicates = _compare(expected, triplet_ids(workspace))
        result["trials"] += 1
        result["lost"] += lost
        result["duplicates"] += duplicates
        result["resumed"] += rerun.returncode == 0 and lost == 0 and duplicates == 0
        shutil.rmtree(workspace)
    result["reference_triplets"] = len(expected)
    return result


def kill_ingest(cli: Cli, scratch: Path, scale: Scale, rng: random.Random) -> dict[str, Any]:
    from craft_agent.synthetic import write_examples

    examples = scratch / "ingest-examples"
    write_examples(examples, pairs=scale.ingest_pairs, seed=12, size=scale.image_size)
    reference = scratch / "ingest-reference"
    _, duration = cli.timed("ingest", str(examples), "-w", str(reference), "--json")
    expected = pair_keys(reference)
    result = {"trials": 0, "interrupted": 0, "lost": 0, "duplicates": 0, "resumed": 0, "corrupt": 0}
    for index, delay in enumerate(_delays(rng, scale.ingest_kills, duration)):
        workspace = scratch / f"ingest-kill-{index}"
        result["interrupted"] += cli.killed_at(delay, "ingest", str(examples), "-w", str(workspace), "--json")
        result["corrupt"] += not catalog_ok(workspace)
        rerun = cli.run("ingest", str(examples), "-w", str(workspace), "--json")
        lost, duplicates = _compare(expected, pair_keys(workspace))
        result["trials"] += 1
        result["lost"] += lost
        result["duplicates"] += duplicates
        result["resumed"] += rerun.returncode == 0 and lost == 0 and duplicates == 0
        shutil.rmtree(workspace, ignore_errors=True)
    result["reference_pairs"] = len(expected)
    return result


def staging_folders(out: Path) -> list[Path]:
    """Hidden staging folders an export to ``out`` writes beside it (``.<name>.partial-<pid>``)."""
    return sorted(out.parent.glob(f".{out.name}.partial-*"))


def kill_export(cli: Cli, scratch: Path, scale: Scale, rng: random.Random) -> dict[str, Any]:
    workspace = scratch / "generate-reference"  # drafted by kill_generate
    export = ["export", "-w", str(workspace), "--format", "mtrefseg,webdataset", "--include-unaudited", "--json"]
    reference = scratch / "export-reference"
    done, duration = cli.timed(*export, "--out", str(reference))
    _must(done, "export the reference")
    result = {"trials": 0, "interrupted": 0, "complete_looking_partials": 0, "leftover_staging": 0, "failed_reruns": 0}
    for index, delay in enumerate(_delays(rng, scale.export_kills, duration)):
        out = scratch / "exports" / f"export-{index}"
        out.parent.mkdir(parents=True, exist_ok=True)
        result["interrupted"] += cli.killed_at(delay, *export, "--out", str(out))
        if out.exists() and cli.run("validate", str(out)).returncode != 0:
            result["complete_looking_partials"] += 1  # an export folder in place that is not whole
        rerun = cli.run(*export, "--out", str(out), *(["--overwrite"] if out.exists() else []))
        result["failed_reruns"] += rerun.returncode != 0
        result["leftover_staging"] += len(staging_folders(out))
        result["trials"] += 1
    return result


# LLM faults ------------------------------------------------------------------------------------------------


class FaultyModel:
    """Answers the agent's requests like a cooperative model, except a share ``rate`` of them, which get one
    fault each: 429, 500, a timeout, malformed JSON, a truncated body or a refusal (seeded)."""

    KINDS = ("429", "500", "timeout", "malformed", "truncated", "refusal")

    def __init__(self, rate: float, seed: int, timeout_s: float, tokens: tuple[int, int] = (1500, 80)) -> None:
        self.rate = rate
        self.timeout_s = timeout_s
        self.tokens = tokens
        self.rng = random.Random(seed)
        self.injected = dict.fromkeys(self.KINDS, 0)
        self.answered = 0

    def __call__(self, body: Any) -> Reply | Status | Refusal | Truncated:
        if self.rng.random() >= self.rate:
            self.answered += 1
            return Reply(cooperative_answer(body), *self.tokens)
        kind = self.rng.choice(self.KINDS)
        self.injected[kind] += 1
        if kind == "429":
            return Status(429, headers={"Retry-After": "0"}, message="rate limited")
        if kind == "500":
            return Status(500, message="model worker crashed")
        if kind == "timeout":
            return Reply(cooperative_answer(body), *self.tokens, delay_s=self.timeout_s + 0.5)
        if kind == "malformed":
            return Reply('{"changes": [ {"candidate_id": ', *self.tokens)
        if kind == "truncated":
            return Truncated(keep=0.5)
        return Refusal()


def llm_faults(cli: Cli, scratch: Path, scale: Scale, seed: int, api_key: str, rate: float = 0.3) -> dict[str, Any]:
    from craft_agent.synthetic import write_examples

    examples = scratch / "llm-examples"
    write_examples(examples, pairs=scale.llm_pairs, seed=13, size=scale.image_size)
    workspace = scratch / "llm-workspace"
    _must(cli.run("ingest", str(examples), "-w", str(workspace), "--json"), "ingest the examples")
    timeout_s, budget_usd = 1.0, 5.0
    # prices set as a user would; 1,580 tokens per answer cost $0.0016 at these prices
    prices = {"CRAFT_LLM_PRICE_PER_1K_PROMPT": "0.001", "CRAFT_LLM_PRICE_PER_1K_COMPLETION": "0.002"}
    model = FaultyModel(rate, seed, timeout_s)
    with ScriptedLLMServer([], models=["faulty-vlm"], fallback=model) as server:
        env = {
            "CRAFT_LLM_BASE_URL": server.base_url,
            "CRAFT_LLM_MODEL": "faulty-vlm",
            "CRAFT_LLM_API_KEY": api_key,
            "CRAFT_LLM_TIMEOUT_S": str(timeout_s),
            **prices,
        }
        generate = ["generate", "-w", str(workspace), "--llm", "openai", "--budget-usd", str(budget_usd), "--json"]
        first = _summary(cli.run(*generate, env=env))
        runs, summary = 1, first
        while summary.get("failed") and runs < 5:
            summary = _summary(cli.run(*generate, env=env))
            runs += 1
    failed_first = {f["input"] for f in first.get("failed", [])}
    pairs = scale.llm_pairs
    costs = [s.get("llm", {}).get("cost_usd") or 0.0 for s in (first, summary)]
    return {
        "fault_rate": rate,
        "pairs": pairs,
        "terminal": pairs - len(summary.get("failed", [])),
        "finished_first_run": pairs - len(failed_first),
        "runs_to_finish": runs,
        "requests": len(server.chat_requests),
        "faults_injected": model.injected,
        "offline_fallbacks_first_run": first.get("offline_fallbacks"),
        "llm_steps_first_run": first.get("llm", {}).get("steps"),
        "cost_usd_first_run": costs[0],
        "cost_within_budget": costs[0] <= budget_usd,
        "unexpected_requests": server.unexpected,
    }


# Bad input ---------------------------------------------------------------------------------------------------


@dataclass
class BadInput:
    """One kind of bad input: how to make it, the command that meets it, and what its answer must name."""

    kind: str
    make: Callable[[Path], list[str]]
    """Writes what the case needs under its folder and returns the command's arguments."""
    names: Callable[[Path], str]
    """The text the answer must contain (the input it is about)."""
    env: dict[str, str] | None = None
    warning: bool = False
    """A warning case: the command may succeed, but must print the warning."""


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _pair_folder(root: Path, size: tuple[int, int] = (64, 64), post_size: tuple[int, int] | None = None) -> Path:
    rng = np.random.default_rng(0)
    height, width = size
    _png(root / "pre" / "p0.png", rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    h2, w2 = post_size or size
    _png(root / "post" / "p0.png", rng.integers(0, 255, (h2, w2, 3), dtype=np.uint8))
    return root


def _with_mask(root: Path, mask: np.ndarray) -> Path:
    _pair_folder(root, mask.shape[:2])
    _png(root / "mask" / "p0.png", mask)
    return root


def _ingest(case: Path, source: Path, *extra: str) -> list[str]:
    return ["ingest", str(source), "-w", str(case / "w"), *extra]


def _existing_workspace(case: Path) -> Path:
    workspace = case / "ws"
    source = _pair_folder(case / "src")
    Cli().run("ingest", str(source), "-w", str(workspace))
    return workspace


def bad_inputs() -> list[BadInput]:
    """The kinds of bad input tried (each in its own folder)."""

    def corrupt(case: Path) -> list[str]:
        source = _pair_folder(case / "src")
        (source / "post" / "p0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
        return _ingest(case, source)

    def truncated(case: Path) -> list[str]:
        source = _pair_folder(case / "src")
        data = (source / "post" / "p0.png").read_bytes()
        (source / "post" / "p0.png").write_bytes(data[: len(data) // 2])
        return _ingest(case, source)

    def not_an_image(case: Path) -> list[str]:
        source = _pair_folder(case / "src")
        (source / "pre" / "p0.png").write_text("hello, I am text")
        return _ingest(case, source)

    def bad_manifest(case: Path) -> list[str]:
        source = _pair_folder(case / "src")
        good = json.dumps({"pre": "pre/p0.png", "post": "post/p0.png", "name": "p0"})
        (source / "manifest.jsonl").write_text(good + '\n{"pre": "pre/p1.png", "post": \n')
        return _ingest(case, source)

    def bomb(case: Path) -> list[str]:
        return _ingest(case, _pair_folder(case / "src", (300, 300)))

    def export_over_file(case: Path) -> list[str]:
        workspace = _existing_workspace(case)
        (case / "taken.txt").write_text("mine")
        return ["export", "-w", str(workspace), "--out", str(case / "taken.txt"), "--format", "mtrefseg"]

    def export_args(*extra: str) -> Callable[[Path], list[str]]:
        def make(case: Path) -> list[str]:
            workspace = _existing_workspace(case)
            return ["export", "-w", str(workspace), "--out", str(case / "out"), *extra]

        return make

    def on_missing_workspace(*command: str) -> Callable[[Path], list[str]]:
        def make(case: Path) -> list[str]:
            _existing_workspace(case)
            return [*command, "-w", str(case / "wss")]

        return make

    def in_workspace(*command: str) -> Callable[[Path], list[str]]:
        def make(case: Path) -> list[str]:
            return [*command, "-w", str(_existing_workspace(case))]

        return make

    return [
        BadInput("missing source folder", lambda c: _ingest(c, c / "nowhere"), lambda c: "nowhere"),
        BadInput("empty source folder", lambda c: _ingest(c, _mkdir(c / "empty")), lambda c: "empty"),
        BadInput(
            "pre/ without post/",
            lambda c: _ingest(c, _only_pre(c / "src")),
            lambda c: "src",
        ),
        BadInput(
            "dates of different sizes",
            lambda c: _ingest(c, _pair_folder(c / "src", (64, 64), (64, 80))),
            lambda c: "p0",
        ),
        BadInput("corrupt PNG", corrupt, lambda c: "p0"),
        BadInput("truncated PNG", truncated, lambda c: "p0"),
        BadInput("text file named .png", not_an_image, lambda c: "p0"),
        BadInput("malformed manifest.jsonl row", bad_manifest, lambda c: "manifest.jsonl"),
        BadInput("1 x 1 pair", lambda c: _ingest(c, _pair_folder(c / "src", (1, 1))), lambda c: "p0"),
        BadInput(
            "mask of another size",
            lambda c: _ingest(c, _mask_of_other_size(c / "src")),
            lambda c: "p0",
        ),
        BadInput(
            "mask marking the whole image changed",
            lambda c: _ingest(c, _with_mask(c / "src", np.full((64, 64), 255, np.uint8))),
            lambda c: "p0",
            warning=True,
        ),
        BadInput(
            "image over the decompression-bomb limit",
            bomb,
            lambda c: "CRAFT_MAX_IMAGE_PIXELS",
            env={"CRAFT_MAX_IMAGE_PIXELS": "10000"},
        ),
        BadInput(
            "--bands beyond the image's bands",
            lambda c: _ingest(c, _pair_folder(c / "src"), "--bands", "7,8,9"),
            lambda c: "--bands",
        ),
        BadInput("mistyped --workspace for generate", on_missing_workspace("generate"), lambda c: "wss"),
        BadInput("mistyped --workspace for candidates", on_missing_workspace("candidates"), lambda c: "wss"),
        BadInput("mistyped --workspace for catalog info", on_missing_workspace("catalog", "info"), lambda c: "wss"),
        BadInput("mistyped --workspace for audit status", on_missing_workspace("audit", "status"), lambda c: "wss"),
        BadInput("export --out over an existing file", export_over_file, lambda c: "taken.txt"),
        BadInput("export in an unknown format", export_args("--format", "coco9"), lambda c: "coco9"),
        BadInput(
            "export --ratios that do not add up",
            export_args("--format", "mtrefseg", "--ratios", "0.5,0.1"),
            lambda c: "--ratios",
        ),
        BadInput("validate a missing folder", lambda c: ["validate", str(c / "MISSING")], lambda c: "MISSING"),
        BadInput(
            "audit pull --policy unknown", in_workspace("audit", "pull", "--policy", "loudest"), lambda c: "loudest"
        ),
        BadInput("generate --llm unknown", in_workspace("generate", "--llm", "gpt9"), lambda c: "gpt9"),
        BadInput(
            "generate --llm openai without an endpoint",
            in_workspace("generate", "--llm", "openai"),
            lambda c: "CRAFT_LLM_BASE_URL",
        ),
        BadInput(
            "an invalid setting in the environment",
            in_workspace("catalog", "info"),
            lambda c: "CRAFT_TILE_SIZE",
            env={"CRAFT_TILE_SIZE": "huge"},
        ),
        BadInput(
            "train --stage change on a missing folder",
            lambda c: [
                "train",
                "--stage",
                "change",
                "--data",
                str(c / "nodata"),
                "--out",
                str(c / "run"),
                "--steps",
                "1",
            ],
            lambda c: "nodata",
        ),
        BadInput(
            "import of a folder that is no export",
            lambda c: ["import", str(_mkdir(c / "notexport")), "-w", str(c / "w")],
            lambda c: "notexport",
        ),
    ]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _only_pre(root: Path) -> Path:
    _png(root / "pre" / "p0.png", np.zeros((64, 64, 3), np.uint8))
    return root


def _mask_of_other_size(root: Path) -> Path:
    _pair_folder(root)
    _png(root / "mask" / "p0.png", np.zeros((32, 32), np.uint8))
    return root


def try_bad_inputs(cli: Cli, scratch: Path) -> dict[str, Any]:
    cases = bad_inputs()
    result: dict[str, Any] = {"kinds": len(cases), "clear_errors": 0, "tracebacks": 0, "unclear": []}
    for index, case in enumerate(cases):
        folder = scratch / "bad" / f"{index:02d}"
        folder.mkdir(parents=True)
        done = cli.run(*case.make(folder), env=case.env, timeout=300)
        text = " ".join((done.stdout + done.stderr).split())
        traceback = "Traceback (most recent call last)" in text
        lowered = text.lower()
        # an error: a failing exit status and a message with what to do; a warning: said, whatever the status
        advised = "fix" in lowered or "error" in lowered
        said = "warning" in lowered if case.warning else done.returncode != 0 and advised
        clear = said and not traceback and case.names(folder) in text
        result["tracebacks"] += traceback
        result["clear_errors"] += clear
        if not clear:
            result["unclear"].append({"kind": case.kind, "rc": done.returncode, "output": text[-400:]})
    return result


# Secrets -----------------------------------------------------------------------------------------------------


def scan_secrets(roots: list[Path], secrets: list[str]) -> dict[str, Any]:
    """Every file under ``roots`` searched for each secret, as is and base64-encoded.

    The local Label Studio server's own credential stores (its ``credentials.json``, database and ``.env``
    in the workspace's private ``label-studio`` folder) hold the token by design and are left out and
    counted; ``bench reliability`` checks that folder is private instead.
    """
    from craft_agent.bench.label_studio_faults import SECRET_STORES

    needles = [s.encode() for s in secrets if s] + [base64.b64encode(s.encode()) for s in secrets if s]
    scanned, stores, found = 0, 0, []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            if path.parent.name == "label-studio" and path.name.split("-")[0] in SECRET_STORES:
                stores += 1
                continue
            scanned += 1
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                found.append(str(path))
    return {"files_scanned": scanned, "found": len(found), "where": found, "credential_stores_left_out": stores}


# The whole run ------------------------------------------------------------------------------------------------


def _must(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode not in (0, 1):
        raise RuntimeError(f"bench reliability could not {what}: rc {done.returncode}: {done.stderr[-800:]}")


def _summary(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        summary: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {"failed": [{"input": "run", "error": done.stderr[-400:]}]}
    return summary


def run_reliability_bench(
    scratch: Path,
    quick: bool = False,
    seed: int = 0,
    label_studio: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Inject the faults (see the module docstring) and return the report.

    Args:
        scratch: an empty folder for the workspaces, exports and servers of the run.
        quick: the CI-sized variant.
        seed: kill moments and LLM faults.
        label_studio: include the parts that need the local Label Studio server.
        progress: see :data:`Progress`.
    """
    from craft_agent.bench.label_studio_faults import label_studio_faults

    scale = QUICK if quick else FULL
    rng = random.Random(seed)
    cli = Cli()
    api_key = f"sk-bench-{random.Random(seed + 1).getrandbits(96):024x}"
    report: dict[str, Any] = {"config": {"quick": quick, "seed": seed, "scale": scale.__dict__}}
    parts: list[tuple[str, Callable[[], Any]]] = [
        ("kills.generate", lambda: kill_generate(cli, scratch, scale, rng)),
        ("kills.ingest", lambda: kill_ingest(cli, scratch, scale, rng)),
        ("kills.export", lambda: kill_export(cli, scratch, scale, rng)),
        ("llm_faults", lambda: llm_faults(cli, scratch, scale, seed, api_key)),
        ("bad_inputs", lambda: try_bad_inputs(cli, scratch)),
    ]
    secrets = [api_key]
    if label_studio:
        parts.append(("label_studio", lambda: label_studio_faults(cli, scratch, quick, secrets)))
    for done, (name, part) in enumerate(parts):
        if progress:
            progress(name, done, len(parts))
        result = part()
        if name == "label_studio":
            report["label_studio_restart"] = result["restart"]
            report["label_studio_security"] = result["security"]
        elif "." in name:
            report.setdefault("kills", {})[name.split(".")[1]] = result
        else:
            report[name] = result
    report["secrets"] = scan_secrets([scratch], secrets)
    if progress:
        progress("", len(parts), len(parts))
    return report
