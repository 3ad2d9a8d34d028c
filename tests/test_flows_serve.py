"""Scheduled regeneration really fires on a real local Prefect server, and picks up a pair dropped in later."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from craft_agent.synthetic import write_examples


def _counts(workspace: Path) -> tuple[int, int, int]:
    """(pairs, triplets, pairs with a triplet) in the workspace catalog; zeros before it exists."""
    path = workspace / "catalog.sqlite"
    if not path.exists():
        return 0, 0, 0
    try:
        with sqlite3.connect(path, timeout=10) as connection:
            pairs = connection.execute("SELECT count(*) FROM pairs").fetchone()[0]
            triplets = connection.execute("SELECT count(*) FROM triplets").fetchone()[0]
            drafted = connection.execute("SELECT count(DISTINCT pair_id) FROM triplets").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0, 0, 0
    return int(pairs), int(triplets), int(drafted)


def _wait_for(condition: object, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(2)
    raise AssertionError(f"{what} within {timeout_s:.0f} s; serve log:\n{log.read_text(errors='replace')[-3000:]}")


def _drop_pair(examples: Path, index: int, watch: Path) -> None:
    """Copy one generated pair into the watched folder (folder layout: pre/ post/ mask/)."""
    name = f"scene_{index:04d}.png"
    for folder in ("pre", "post", "mask"):
        (watch / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(examples / folder / name, watch / folder / f"dropped_{index}.png")


def test_a_scheduled_regeneration_fires_and_picks_up_a_dropped_pair(tmp_path: Path) -> None:
    examples, watch, workspace = tmp_path / "examples", tmp_path / "watch", tmp_path / "ws"
    write_examples(examples, pairs=3, seed=1, size=128)
    _drop_pair(examples, 0, watch)
    _drop_pair(examples, 1, watch)
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRAFT_", "PREFECT_"))}
    command = [sys.executable, "-m", "craft_agent", "flows", "serve", "-w", str(workspace), "--watch", str(watch)]
    with log.open("wb") as output:
        serve = subprocess.Popen(
            [*command, "--every", "5", "--audit-every", "0", "--llm", "offline", "--masks", "classical"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        # nobody runs anything by hand: the schedule must create the runs and the runner execute them
        _wait_for(lambda: _counts(workspace)[2] == 2, 300, "the scheduled run did not draft the 2 watched pairs", log)
        _drop_pair(examples, 2, watch)
        _wait_for(lambda: _counts(workspace)[2] == 3, 300, "the next scheduled run did not pick up the new pair", log)
        pairs, triplets, _ = _counts(workspace)
        assert pairs == 3 and triplets > 0
        assert "Prefect server: http://127.0.0.1:" in log.read_text()
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=60)
        stopped = subprocess.run(
            [sys.executable, "-m", "craft_agent", "flows", "stop", "-w", str(workspace)], env=env, capture_output=True
        )
        assert stopped.returncode == 0, stopped.stderr


def test_bench_flows_drafts_the_same_triplets_sequentially_on_threads_and_on_dask(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRAFT_", "PREFECT_"))}
    out = tmp_path / "flows.json"
    command = ["bench", "flows", "--out", str(out), "--pairs", "3", "--size", "128", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "craft_agent", *command], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["identical"] is True and report["triplets"] > 0 and report["dask_workers"] == 2
    assert all(report[f"{way}_s"] > 0 for way in ("sequential", "threads", "dask"))
