"""Tiny, randomly initialised LTX-Video pipelines built here, with no download: about 400 KB
of weights, a T5 text encoder of two small layers and a word-level tokenizer made with the
``tokenizers`` library. Saved with ``save_pretrained``, the folder is what a real
model's folder is to the diffusers backend: ``LTXPipeline`` and ``LTXImageToVideoPipeline``
both load it.

The VAE compresses 4x in space and 4x in time here (two scaling blocks): frames come as
``4 * k + 1``; the LTX pipelines take sides that are multiples of 32.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

WORDS = [
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "with",
    "cat",
    "dog",
    "card",
    "test",
    "pattern",
    "image",
    "video",
    "red",
    "blue",
    "sky",
    "sea",
]

TINY_OPTIONS: dict[str, Any] = {
    "dtype": "float32",
    # CI has no GPU; on a machine with one, VIDGATE_TEST_DIFFUSERS_DEVICE=cuda runs the
    # same tests there.
    "device": os.environ.get("VIDGATE_TEST_DIFFUSERS_DEVICE", "cpu"),
    "steps": 2,
    "guidance_scale": 1.0,  # no second (unconditional) pass: half the work
    "fps": 8,
    "default_duration_s": 1,
    "max_duration_s": 2,
    "frame_step": 4,
    "sizes": {"240p": [64, 32]},
    "size_multiple": 32,  # LTX-Video's pipeline asks for it
    "call_options": {"max_sequence_length": 16},
}
"""Options of a diffusers model served from :func:`build_tiny_ltx`'s folder (add
``model_path``)."""


def _tokenizer() -> Any:
    """A word-level tokenizer of :data:`WORDS`, built here (a real T5 one is a download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def build_tiny_ltx(folder: Path) -> Path:
    """Write a tiny LTX-Video text-to-video pipeline into ``folder`` and return it."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel
    from transformers.utils import logging

    logging.disable_progress_bar()  # save_pretrained's bar, in the test's output

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=1,
        caption_channels=16,
    )
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(WORDS) + 3,
            d_model=16,
            d_kv=8,
            d_ff=32,
            num_layers=2,
            num_heads=2,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    pipe = LTXPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=_tokenizer(),
    )
    pipe.save_pretrained(folder)
    return folder
