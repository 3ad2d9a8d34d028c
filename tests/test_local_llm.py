"""Optional: the agent through the openai backend against a REAL local model (SmolLM2 via llama.cpp).

Skipped unless `make local-llm` installed it (llama-cpp-python builds from source for about 16 minutes).
The model's answers are weak: the run must still complete, every pair recorded, nothing failed outright.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from craft_agent.llm.local import LOCAL_MODEL_ALIAS, missing_local_llm, start_local_llm

pytestmark = pytest.mark.skipif(
    missing_local_llm() is not None, reason=f"local LLM not available: {missing_local_llm()}"
)


def test_agent_survives_a_real_small_model(tmp_path: Path) -> None:
    from craft_agent.agent.nodes import AgentConfig
    from craft_agent.agent.run import generate
    from craft_agent.llm import OpenAIBackend, UsageMeter
    from craft_agent.masks import ClassicalMaskEngine
    from tests.test_agent import _workspace

    catalog, store, workspace = _workspace(tmp_path, pairs=1, seed=2)
    process, base_url = start_local_llm(log=tmp_path / "llama.log")
    try:
        with catalog:
            meter = UsageMeter()
            backend = OpenAIBackend(base_url, LOCAL_MODEL_ALIAS, None, timeout_s=120, usage=meter)
            # a handful of targets keeps the run to minutes: a 135M model on two cores answers in seconds
            config = AgentConfig(
                max_targets_per_pair=4, expressions_per_target=1, multi_target=False, no_target_ratio=0
            )
            summary = generate(catalog, store, backend, ClassicalMaskEngine(), workspace, config)
            assert summary.pairs + len(summary.failed) == 1, summary.failed
            assert summary.failed == [], summary.failed
            # the model really answered (whatever the quality), and the run still drafted triplets
            assert meter.snapshot().calls > 0 and summary.triplets > 0
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
