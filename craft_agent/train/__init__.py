"""Training of the project's own networks (``craft-agent train``).

- ``change``: the learned change proposer (:mod:`craft_agent.train.change`), a small siamese U-Net trained
  from scratch on pairs with change masks, used by ``create_detector("learned", checkpoint=...)``.
"""
