"""The package works installed from a wheel, away from the checkout.

The prompts and the labeling config are package data loaded with importlib.resources; a lookup relative to
the repository would pass in an editable checkout and fail here. The wheel is built from a copy of the
sources and installed into a fresh virtual environment that borrows this environment's dependencies (no
network) but not its editable craft-agent, then the example pipeline runs from an unrelated folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from craft_agent.agent.prompts import PROMPT_NAMES

ROOT = Path(__file__).resolve().parents[1]
PROMPT_FILES = {name: f"craft_agent/prompts/{name}.md" for name in PROMPT_NAMES}
PACKAGE_DATA = [*PROMPT_FILES.values(), "craft_agent/auditing/labeling_config.xml", "craft_agent/auditing/GUIDE.md"]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]

# Run inside the fresh environment after `generate`: where the package and its data were found, and what
# the drafted triplets recorded about the prompts.
PROBE = """
import json, sys
import xml.etree.ElementTree as ET
from pathlib import Path
import craft_agent
from craft_agent.agent.prompts import DEFAULT_PROMPTS_DIR
from craft_agent.audit.labeling import LABEL_CONFIG_PATH, label_config
from craft_agent.catalog import Catalog
from craft_agent.settings import Settings

with Catalog.from_settings(Settings(workspace=Path(sys.argv[1]))) as catalog:
    hashes = [t.provenance.prompt_hashes for t in catalog.iter_triplets()]
print(json.dumps({
    "package": craft_agent.__file__,
    "prompts": str(DEFAULT_PROMPTS_DIR),
    "label_config": str(LABEL_CONFIG_PATH),
    "label_config_root": ET.fromstring(label_config()).tag,
    "prompt_hashes": hashes,
}))
"""


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _build_wheel(tmp_path: Path) -> Path:
    """A wheel built from a copy of the sources, so the build writes nothing into the shared checkout."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in ("craft_agent", "flows"):
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for licence in ROOT.glob("LICEN[CS]E*"):
        shutil.copy2(licence, src / licence.name)
    dist = tmp_path / "dist"
    # No build isolation: the build backend comes from this environment, so no network is needed.
    _run(*PIP, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, src, cwd=tmp_path)
    (wheel,) = dist.glob("craft_agent-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_install_runs_the_example_pipeline_with_its_own_package_data(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert set(PACKAGE_DATA) <= names, f"missing from the wheel: {sorted(set(PACKAGE_DATA) - names)}"

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    # Installed before the dependencies are made visible, so pip cannot mistake this environment's
    # editable craft-agent for the wheel's.
    _run(*PIP, "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    where = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path)
    site_packages = Path(where.strip())
    # A plain path line in a .pth only extends sys.path; the .pth files in that folder (among them the
    # editable install's finder, which would import the checkout) are not processed.
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site_packages / "dependencies.pth").write_text("\n".join(ours) + "\n")

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAFT_") and k != "PYTHONPATH"}
    env["PYTHONNOUSERSITE"] = "1"
    craft: list[str | Path] = [python, "-m", "craft_agent"]
    _run(*craft, "examples", "make", "--out", "examples", "--pairs", "2", "--size", "128", cwd=work, env=env)
    _run(*craft, "ingest", "examples", "-w", "ws", cwd=work, env=env)
    summary = json.loads(_run(*craft, "generate", "-w", "ws", "--json", cwd=work, env=env))
    assert summary["failed"] == [] and summary["pairs"] == 2 and summary["triplets"] > 0

    probe = json.loads(_run(python, "-c", PROBE, "ws", cwd=work, env=env))
    for key in ("package", "prompts", "label_config"):
        assert Path(probe[key]).is_relative_to(site_packages), f"{key} came from {probe[key]}, not the wheel"
    assert probe["label_config_root"] == "View"
    expected = {name: hashlib.sha256((ROOT / path).read_bytes()).hexdigest() for name, path in PROMPT_FILES.items()}
    assert len(probe["prompt_hashes"]) == summary["triplets"]
    for hashes in probe["prompt_hashes"]:
        assert hashes and all(expected[name] == digest for name, digest in hashes.items()), hashes
