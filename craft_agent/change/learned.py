"""A learned change proposer: a small siamese U-Net trained from scratch on pairs with change masks.

The network sees both dates through one shared encoder; at every level the two feature maps are fused
into ``|a - b|`` and ``a + b`` (both symmetric in the dates, so the prediction does not depend on which
image is called "pre"), and a U-Net decoder turns the fused features into one change logit per pixel.
It is small (base 16 channels, four levels, about 0.5 M parameters) so that it trains in minutes and runs
on a CPU; ``craft-agent train --stage change`` makes a checkpoint, :class:`LearnedChangeDetector` uses it.

Only this module and :mod:`craft_agent.train` import torch, so ``import craft_agent.change`` stays cheap.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional

from craft_agent.change.detector import ChangeResult, DetectorConfig
from craft_agent.change.evidence import to_lab
from craft_agent.change.instances import split_instances
from craft_agent.change.objects import Region, decide_change_type, region_candidate, remove_small_regions
from craft_agent.change.scale import gsd_scale
from craft_agent.errors import ConfigError
from craft_agent.models import ChangeCandidate, Domain

CHECKPOINT_FORMAT = "craft-agent/change-model/1"
"""Written into every checkpoint; a file without it (or with another version) is refused on load."""
MULTIPLE = 16
"""Input sides are padded to a multiple of this: the network halves them ``levels - 1`` times (16 allows five)."""
WHOLE_IMAGE_MAX = 1024
"""Images up to this side are predicted in one pass; larger ones by overlapping windows of this side."""
WINDOW_OVERLAP = 128
MODEL_GSD_M = 0.5
"""Ground sample distance (m/px) a new model is trained at: pairs whose GSD is known are resampled to it for
training and for prediction, so a house is as many pixels wide whichever sensor saw it (WHU-CD's 0.3 m and
LEVIR-CD's 0.5 m houses otherwise differ 1.7 times in size, and a model trained on one misses the other's)."""


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU (with torch's threads set to the usable cores).

    Raises:
        ConfigError: for ``cuda`` on a machine without CUDA, or an unknown device name.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device {device!r}.", hint="use auto, cpu or cuda.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but torch sees no CUDA device.", hint="use --device cpu or auto.")
    if device == "cpu":
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    return torch.device(device)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): there bf16 autocast makes the change
    model about three times faster to train and run; elsewhere it would be emulated, and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def mixed_precision(device: torch.device) -> torch.autocast:
    """Training's bfloat16 autocast where the hardware does bf16 (CUDA, or a CPU with :func:`cpu_has_bf16`),
    off elsewhere. Weights, optimizer state and the loss stay float32; only the convolutions run in bf16."""
    kind = "cuda" if device.type == "cuda" else "cpu"
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=kind == "cuda" or cpu_has_bf16())


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SiameseChangeNet(nn.Module):
    """Siamese U-Net: shared encoder on both dates, ``|a - b|`` and ``a + b`` fusion per level, U-Net decoder.

    Args:
        base: channels of the first level; level ``i`` has ``base * 2 ** i``.
        levels: encoder levels (the input side must be a multiple of ``2 ** (levels - 1)``).

    ``forward(pre, post)`` takes two float tensors (N, 3, H, W), normalised by :func:`normalise_image`, and
    returns change logits (N, 1, H, W).
    """

    def __init__(self, base: int = 16, levels: int = 4) -> None:
        super().__init__()
        widths = [base * 2**i for i in range(levels)]
        self.widths = widths
        """Channels of the fused features per level, finest first."""
        self.encoder = nn.ModuleList([_block(3 if i == 0 else widths[i - 1], width) for i, width in enumerate(widths)])
        self.fuse = nn.ModuleList([nn.Conv2d(2 * width, width, 1) for width in widths])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(levels - 1)])
        self.decoder = nn.ModuleList([_block(2 * widths[i], widths[i]) for i in range(levels - 1)])
        self.head = nn.Conv2d(widths[0], 1, 1)
        # channels-last weights make oneDNN (and cuDNN) pick their fast convolution kernels, and the
        # activations follow the weights: a training step on two CPU cores takes 0.8 s instead of 1.2 s,
        # a 1024 px prediction 1.6 s instead of 2.5 s, with the same results to float rounding
        self.to(memory_format=torch.channels_last)

    def _encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for index, block in enumerate(self.encoder):
            image = block(image if index == 0 else functional.max_pool2d(image, 2))
            features.append(image)
        return features

    def fuse_dates(self, pre: torch.Tensor, post: torch.Tensor) -> list[torch.Tensor]:
        """Both dates through the shared encoder, fused per level (finest first)."""
        # one encoder pass over both dates (a batch twice as large) instead of two passes
        features = self._encode(torch.cat([pre, post]))
        fused = []
        for fuse, feature in zip(self.fuse, features, strict=True):
            a, b = feature.chunk(2)
            fused.append(fuse(torch.cat([(a - b).abs(), a + b], dim=1)))
        return fused

    def decode(self, fused: list[torch.Tensor]) -> torch.Tensor:
        """Logits (N, 1, H, W) from the fused features of every level (the referring model conditions them)."""
        x = fused[-1]
        for index in reversed(range(len(self.decoder))):
            x = self.decoder[index](torch.cat([self.up[index](x), fused[index]], dim=1))
        logits: torch.Tensor = self.head(x)
        return logits

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        return self.decode(self.fuse_dates(pre, post))


def normalise_image(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) to float32 (3, H, W), each channel standardised over the image.

    Per-image statistics remove most of the difference in exposure between dates and between sensors,
    which a network trained on a handful of sources cannot learn to ignore by itself.
    """
    pixels = image.astype(np.float32) / 255.0
    mean = pixels.reshape(-1, 3).mean(axis=0)
    std = pixels.reshape(-1, 3).std(axis=0)
    return np.ascontiguousarray(((pixels - mean) / np.maximum(std, 1e-3)).transpose(2, 0, 1))


def checkpoint_gsd(path: Path) -> float | None:
    """The resolution (m per pixel) a change checkpoint was trained at; None for a checkpoint of none.

    Raises:
        ConfigError: as :func:`load_change_model`.
    """
    return load_change_model(path, "cpu").gsd_m


def resample(image: np.ndarray, factor: float, mask: bool = False) -> np.ndarray:
    """``image`` (H, W[, C]) resized by ``factor``: area-averaged when shrinking, bilinear when enlarging; a
    boolean ``mask`` is resampled as coverage and kept where at least half a pixel is covered."""
    if factor == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    if mask:
        return np.asarray(cv2.resize(image.astype(np.float32), size, interpolation=interpolation) >= 0.5)
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=interpolation))


@dataclass
class ChangeModel:
    """A loaded checkpoint: the network (in eval mode, on its device) and what was saved with it.

    Attributes:
        net: the network.
        threshold: probability above which a pixel counts as changed.
        sha256: hash of the checkpoint file (its first 12 characters go into candidate ids).
        path: the checkpoint file.
        device: where ``net`` lives.
        info: the rest of the checkpoint's metadata (architecture, training summary, sources).
        gsd_m: the ground sample distance it was trained at (None: pairs at their own resolution, as
            checkpoints from before :data:`MODEL_GSD_M` were).
    """

    net: SiameseChangeNet
    threshold: float
    sha256: str
    path: Path
    device: torch.device
    info: dict[str, Any]
    gsd_m: float | None = None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_change_model(path: Path, device: str = "auto") -> ChangeModel:
    """Load a checkpoint written by ``craft-agent train --stage change``.

    Args:
        path: the ``change.pt`` file.
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        The network in eval mode with its threshold and metadata.

    Raises:
        ConfigError: when the file is missing, unreadable, not a change checkpoint, or its weights do not fit
            the architecture it declares; the message names the file and says what to do.
    """
    path = Path(path)
    retrain = (
        "train one with `craft-agent train --stage change --data DIR --out RUN`, then pass --checkpoint RUN/change.pt"
    )
    if not path.is_file():
        raise ConfigError(f"change checkpoint {path} does not exist.", hint=retrain)
    target = resolve_device(device)
    try:
        # weights_only: a checkpoint is data, never code to run
        saved = torch.load(path, map_location=target, weights_only=True)
    except Exception as exc:  # torch raises pickle, zip, EOF and runtime errors for a damaged file
        raise ConfigError(
            f"change checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}).",
            hint=f"the file is damaged or not a torch checkpoint; {retrain}",
        ) from exc
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        found = saved.get("format") if isinstance(saved, dict) else type(saved).__name__
        raise ConfigError(
            f"{path} is not a craft-agent change checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r}).",
            hint=retrain,
        )
    architecture = saved.get("architecture", {})
    try:
        net = SiameseChangeNet(**architecture)
        net.load_state_dict(saved["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ConfigError(
            f"the weights in {path} do not fit the network it declares ({architecture}): {str(exc)[:300]}",
            hint=f"the checkpoint comes from another version of craft-agent; {retrain}",
        ) from exc
    net.to(target).eval()
    info = {k: v for k, v in saved.items() if k not in ("state_dict", "optimizer", "rng")}
    return ChangeModel(
        net=net,
        threshold=float(saved.get("threshold", 0.5)),
        sha256=_file_sha256(path),
        path=path,
        device=target,
        info=info,
        gsd_m=float(saved["gsd_m"]) if saved.get("gsd_m") else None,
    )


def _windows(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets of windows of ``size`` covering ``length`` (the last one flush with the end)."""
    if length <= size:
        return [0]
    step = size - overlap
    starts = list(range(0, length - size, step))
    return [*starts, length - size]


@torch.no_grad()
def predict_probability(
    net: nn.Module, pre: np.ndarray, post: np.ndarray, device: torch.device, scale: float = 1.0
) -> np.ndarray:
    """Change probability of every pixel of a pair of any size.

    The images are resampled by ``scale`` (see :func:`gsd_scale`; the map is resampled back), then padded
    (reflected) to a multiple of :data:`MULTIPLE`; up to :data:`WHOLE_IMAGE_MAX` pixels a side they go
    through the network at once, larger ones in overlapping windows of that side whose probabilities are
    averaged where they overlap. Normalisation uses the whole image either way.

    Args:
        net: a :class:`SiameseChangeNet` (switched to eval mode here).
        pre, post: RGB uint8 (H, W, 3) of one shape.
        device: where ``net`` lives.
        scale: resampling factor to the model's resolution (ignored where a side would fall under
            :data:`MULTIPLE`).

    Returns:
        float32 (H, W) in 0..1, at the images' own size.

    Raises:
        ValueError: when the images differ in shape or are not RGB.
    """
    if pre.shape != post.shape or pre.ndim != 3 or pre.shape[2] != 3:
        raise ValueError(f"expected two RGB images (H, W, 3) of one shape, got {pre.shape} and {post.shape}")
    if scale != 1.0 and min(pre.shape[:2]) * scale >= MULTIPLE:
        height, width = pre.shape[:2]
        probability = predict_probability(net, resample(pre, scale), resample(post, scale), device)
        return np.asarray(cv2.resize(probability, (width, height), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    net.eval()
    height, width = pre.shape[:2]
    pad_h, pad_w = (-height) % MULTIPLE, (-width) % MULTIPLE
    images = []
    for image in (pre, post):
        normalised = normalise_image(image)
        images.append(np.pad(normalised, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect"))
    full_h, full_w = height + pad_h, width + pad_w
    total = np.zeros((full_h, full_w), dtype=np.float32)
    count = np.zeros((full_h, full_w), dtype=np.float32)
    size = WHOLE_IMAGE_MAX
    # float32 on a CPU whatever it supports: the same pair gives the same map (and candidate ids) on every machine
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    for y in _windows(full_h, size, WINDOW_OVERLAP):
        for x in _windows(full_w, size, WINDOW_OVERLAP):
            a, b = (torch.from_numpy(i[:, y : y + size, x : x + size]).unsqueeze(0).to(device) for i in images)
            with autocast:
                logits = net(a, b)
            probability = torch.sigmoid(logits.float())[0, 0].cpu().numpy()
            total[y : y + probability.shape[0], x : x + probability.shape[1]] += probability
            count[y : y + probability.shape[0], x : x + probability.shape[1]] += 1.0
    return np.asarray((total / count)[:height, :width], dtype=np.float32)


class LearnedChangeDetector:
    """Change proposals from a trained :class:`SiameseChangeNet` checkpoint.

    Args:
        checkpoint: a ``change.pt`` written by ``craft-agent train --stage change``.
        domain: picks the object-level defaults (smallest object, change-type ring) of
            :meth:`DetectorConfig.for_domain`.
        device: ``auto``, ``cpu`` or ``cuda``.

    Raises:
        ConfigError: when the checkpoint cannot be loaded (see :func:`load_change_model`).
    """

    name = "learned"

    def __init__(self, checkpoint: Path, domain: Domain | str = Domain.RS, device: str = "auto") -> None:
        self.model = load_change_model(checkpoint, device)
        self.config = DetectorConfig.for_domain(domain)

    def detect(self, pair_id: str, pre: np.ndarray, post: np.ndarray, gsd_m: float | None = None) -> ChangeResult:
        """Find changes between two co-registered RGB uint8 images of one shape, whose ground sample distance
        is ``gsd_m`` (None: unknown): the model sees them resampled to the resolution it was trained at
        (:func:`gsd_scale`); objects are found at the images' own resolution.

        Returns:
            ``evidence``: the change probability; ``changed``: probability above the checkpoint's threshold
            without specks; ``candidates``: one per object of ``changed`` (touching objects split by
            :func:`split_instances`), strongest (mean probability x sqrt(area)) first, ids deterministic
            for a checkpoint.

        Raises:
            ValueError: when the images differ in shape or are not RGB.
        """
        config, model = self.config, self.model
        probability = predict_probability(model.net, pre, post, model.device, gsd_scale(gsd_m, model.gsd_m))
        height, width = probability.shape
        min_area = max(config.min_area_px, int(config.min_area_fraction * height * width))
        changed = remove_small_regions(probability > model.threshold, min_area)
        regions = split_instances(changed, min_area, evidence=probability, source="region")
        regions.sort(key=lambda r: (r.evidence * np.sqrt(r.area), r.box), reverse=True)
        candidates = []
        if regions:
            lab_pre, lab_post = to_lab(pre), to_lab(post)
            candidates = [
                self._candidate(pair_id, region, probability, lab_pre, lab_post)
                for region in regions[: config.max_candidates]
            ]
        return ChangeResult(evidence=probability, changed=changed, threshold=model.threshold, candidates=candidates)

    def _candidate(
        self, pair_id: str, region: Region, probability: np.ndarray, lab_pre: np.ndarray, lab_post: np.ndarray
    ) -> ChangeCandidate:
        config = self.config
        x0, y0, x1, y1 = region.box
        change_type, cues = decide_change_type(lab_pre, lab_post, region, config.type_ring_px, config.type_ratio)
        peak = float(probability[y0:y1, x0:x1][region.crop].max())
        return region_candidate(
            region,
            pair_id,
            probability.shape,
            [pair_id, region.box, region.area, self.model.sha256[:12]],
            change_type,
            source=f"learned:{region.source}",
            evidence={
                "mean_probability": round(region.evidence, 4),
                "max_probability": round(peak, 4),
                **{k: round(v, 3) for k, v in cues.items()},
            },
            scores={"confidence": round(region.evidence, 4)},
            grid=(config.grid_rows, config.grid_cols),
        )
