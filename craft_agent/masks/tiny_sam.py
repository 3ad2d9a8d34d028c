"""A tiny randomly initialised Segment Anything model, assembled from segment_anything's own modules.

For tests and benchmarks on machines without a checkpoint: they exercise the real ``SamPredictor`` code path
with this model (image size 256, two transformer blocks). Its masks are meaningless, its shapes, plumbing
and caching real. Never used to draft data.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer


def tiny_sam(seed: int = 0) -> Sam:
    torch.manual_seed(seed)
    image_size, patch, prompt_dim = 256, 16, 64
    encoder = ImageEncoderViT(
        depth=2,
        embed_dim=128,
        img_size=image_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=2,
        patch_size=patch,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=[1],
        window_size=4,
        out_chans=prompt_dim,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=prompt_dim,
        image_embedding_size=(image_size // patch, image_size // patch),
        input_image_size=(image_size, image_size),
        mask_in_chans=16,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=256, num_heads=2),
        transformer_dim=prompt_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=64,
    )
    return Sam(
        image_encoder=encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=decoder,
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def save_checkpoint(path: Path, seed: int = 0) -> Path:
    """A state-dict file like the published checkpoints (for the loading-code path)."""
    torch.save(tiny_sam(seed).state_dict(), path)
    return path
