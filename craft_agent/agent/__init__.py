"""The CRAFT agent: a LangGraph graph that turns a pair's change candidates into drafted triplets.

``build_graph()`` in ``graph.py`` shows the control flow; ``nodes.py`` holds the steps over the typed state of
``state.py``; ``targets.py`` (which targets to keep, how each is told apart) and ``compose.py`` (groups and
no-target changes) the pure logic they call; ``schemas.py`` the contract with the language model; ``run.py`` runs
it over the catalog with checkpoints; ``revise.py`` drafts new revisions of the triplets auditors sent back with
"needs fix".
"""
