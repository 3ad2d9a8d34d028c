"""The baseline MTRS model: the change model, conditioned on the referring expression.

    earlier, later --shared encoder--> |a - b|, a + b per level   (craft_agent.change.learned.SiameseChangeNet)
    expression --text encoder--> word tokens + sentence vector
    per level: FiLM of the fused features by the sentence vector (initialised to the identity)
    coarsest level: cross-attention from image positions to the expression's words
    decoder of the change model -> mask logits;  pooled bottleneck + sentence -> "is there a target?" logit

Stage 1 (``craft-agent train --stage change``) trains the change model; stage 2 starts from it: the FiLM and
attention layers begin as the identity, so before fine-tuning the model answers with the change mask. The
existence head lets it answer "nothing" for a no-target expression.

Text: the words are hashed into a fixed number of buckets (no vocabulary file, any language, never an unknown
word) and read by a small bidirectional GRU, trained from scratch with the rest.
"""

from __future__ import annotations

import hashlib
import re

import torch
from torch import nn
from torch.nn import functional

from craft_agent.change.learned import SiameseChangeNet

WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
MAX_WORDS = 32


def word_ids(text: str, buckets: int, max_words: int = MAX_WORDS) -> list[int]:
    """The expression's words as bucket ids in 1..buckets-1 (0 is padding), lower-cased, at most ``max_words``."""
    words = WORD.findall(text.lower())[:max_words] or ["<empty>"]
    digests = (hashlib.blake2b(word.encode(), digest_size=4).digest() for word in words)
    return [1 + int.from_bytes(digest, "little") % (buckets - 1) for digest in digests]


def tokenize(texts: list[str], buckets: int, max_words: int = MAX_WORDS) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of expressions as padded ids (N, T) and a mask of real words (N, T)."""
    ids = [word_ids(text, buckets, max_words) for text in texts]
    longest = max(len(i) for i in ids)
    padded = torch.zeros((len(ids), longest), dtype=torch.int64)
    for row, words in enumerate(ids):
        padded[row, : len(words)] = torch.tensor(words)
    return padded, padded > 0


class HashedTextEncoder(nn.Module):
    """Hashed word embeddings read by a bidirectional GRU: word tokens (N, T, dim) and a sentence (N, dim)."""

    def __init__(self, dim: int = 128, buckets: int = 8192) -> None:
        super().__init__()
        self.buckets = buckets
        self.embed = nn.Embedding(buckets, dim, padding_idx=0)
        self.gru = nn.GRU(dim, dim // 2, batch_first=True, bidirectional=True)
        self.sentence = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))

    def forward(self, ids: torch.Tensor, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, _ = self.gru(self.embed(ids))
        weights = words.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return tokens, self.sentence(pooled)


class ReferSegNet(nn.Module):
    """See the module docstring.

    Args:
        base / levels: the change model's architecture (must match a stage-1 checkpoint to load it).
        text_dim: width of the text encoder.
        buckets: hashed word buckets.

    ``forward(pre, post, ids, words)`` takes normalised images (N, 3, H, W) and :func:`tokenize` output and
    returns ``(mask_logits (N, 1, H, W), exists_logits (N,))``.
    """

    def __init__(self, base: int = 16, levels: int = 4, text_dim: int = 128, buckets: int = 8192) -> None:
        super().__init__()
        self.change = SiameseChangeNet(base, levels)
        self.text = HashedTextEncoder(text_dim, buckets)
        widths = self.change.widths
        films = [nn.Linear(text_dim, 2 * width) for width in widths]
        for layer in films:  # identity at the start: the stage-1 model's answer
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.film = nn.ModuleList(films)
        deepest = widths[-1]
        self.attend = nn.MultiheadAttention(deepest, num_heads=4, kdim=text_dim, vdim=text_dim, batch_first=True)
        self.attend_gate = nn.Parameter(torch.zeros(1))
        self.exists = nn.Sequential(nn.Linear(deepest + text_dim, 64), nn.ReLU(inplace=True), nn.Linear(64, 1))

    def forward(
        self, pre: torch.Tensor, post: torch.Tensor, ids: torch.Tensor, words: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fused = self.change.fuse_dates(pre, post)
        tokens, sentence = self.text(ids, words)
        conditioned = []
        for film, feature in zip(self.film, fused, strict=True):
            gamma, beta = film(sentence).chunk(2, dim=1)
            conditioned.append(feature * (1 + gamma[..., None, None]) + beta[..., None, None])
        deepest = conditioned[-1]
        n, c, h, w = deepest.shape
        queries = deepest.flatten(2).transpose(1, 2)
        attended, _ = self.attend(queries, tokens, tokens, key_padding_mask=~words)
        conditioned[-1] = deepest + self.attend_gate * attended.transpose(1, 2).reshape(n, c, h, w)
        pooled = functional.adaptive_avg_pool2d(conditioned[-1], 1).flatten(1)
        exists = self.exists(torch.cat([pooled, sentence], dim=1)).squeeze(1)
        return self.change.decode(conditioned), exists
