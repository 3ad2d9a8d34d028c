"""The referring rule: one target per expression within a pair, in words that agree."""

from __future__ import annotations

from pathlib import Path

from craft_agent.agent.nodes import AgentConfig
from craft_agent.agent.offline import OfflineBackend
from craft_agent.agent.run import generate
from craft_agent.agent.wording import fix_agreement, ordinal_expression
from craft_agent.catalog import Catalog, ImageStore
from craft_agent.imagery import IngestOptions, ingest
from craft_agent.masks import ClassicalMaskEngine
from craft_agent.synthetic import write_examples


def test_rank_words_make_an_expression_unique() -> None:
    assert ordinal_expression("the grey building that appeared", 0, "west") == (
        "the westernmost grey building that appeared"
    )
    assert ordinal_expression("the grey building that appeared", 2, "north") == (
        "the third grey building from the north that appeared"
    )
    assert ordinal_expression("the grey building", 1, "east") == "the second grey building from the east"
    assert ordinal_expression("the grey building", 12, "east") is None
    assert ordinal_expression("a grey building", 0, "east") is None


def test_verbs_agree_with_the_number_of_targets_and_articles_with_the_sound() -> None:
    assert fix_agreement("the roofs that looks different now", plural=True) == "the roofs that look different now"
    assert fix_agreement("the buildings that was built", plural=True) == "the buildings that were built"
    assert fix_agreement("the roof that were repainted", plural=False) == "the roof that was repainted"
    assert fix_agreement("a orange car beside a unit", plural=False) == "an orange car beside a unit"


def test_no_expression_is_shared_by_two_triplets_of_a_pair(tmp_path: Path) -> None:
    write_examples(tmp_path / "examples", pairs=3, seed=11, size=384)
    workspace = tmp_path / "ws"
    with Catalog(f"sqlite:///{workspace / 'catalog.sqlite'}") as catalog:
        store = ImageStore(workspace)
        ingest(tmp_path / "examples", catalog, store, IngestOptions())
        for mode in ("detector", "labels"):
            generate(catalog, store, OfflineBackend(), ClassicalMaskEngine(), workspace, AgentConfig(proposals=mode))
        for pair in catalog.iter_pairs():
            triplets = list(catalog.iter_triplets(pair_id=pair.id))
            for mode in ("detector", "labels"):
                words = [
                    e.lower() for t in triplets if t.provenance.backends["proposals"] == mode for e in t.expressions
                ]
                assert len(words) == len(set(words)), pair.name
