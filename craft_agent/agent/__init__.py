"""The CRAFT agent: a LangGraph graph that turns a pair's change candidates into drafted triplets.

``build_graph()`` in ``graph.py`` shows the control flow; ``nodes.py`` holds the steps; ``schemas.py`` the
contract with the language model; ``run.py`` runs it over the catalog with checkpoints; ``revise.py`` drafts new
revisions of the triplets auditors sent back with "needs fix".
"""
