"""ComfyUI's native HunyuanVideo conditioning turned into :class:`PromptEmbeds`.

``DualCLIPLoader(type=hunyuan_video)`` + ``CLIPTextEncode`` give ``[[states, extras]]``: states
[B, L, 4096] cut to the user turn without padding, ``extras["pooled_output"]`` [B, 768] and, only
when some tokens are padding, ``extras["attention_mask"]`` [B, L]. The states are padded here to the
256 tokens of this pack's own encoder (longer prompts keep all their tokens: native does not cut
at 256, and the DiT takes any length); padded tokens are masked out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..conditioning import PromptEmbeds
from .config import CLIP_DIM, LLM_DIM
from .templates import MAX_PROMPT_TOKENS


def embeds_from_conditioning(
    conditioning: Sequence,
    min_tokens: int = MAX_PROMPT_TOKENS,
    text_dim: int | None = LLM_DIM,
    pooled_dim: int | None = CLIP_DIM,
    name: str = "conditioning",
) -> PromptEmbeds:
    """One native CONDITIONING as prompt embeds; ``text_dim``/``pooled_dim`` (None: any) guard
    against conditioning from other models' text encoders."""
    if not isinstance(conditioning, (list, tuple)) or len(conditioning) == 0:
        raise ValueError(f"the {name} is empty: connect the output of CLIPTextEncode.")
    if len(conditioning) > 1:
        raise ValueError(
            f"the {name} holds {len(conditioning)} combined prompts (ConditioningCombine or areas); "
            "HunyuanVideo takes one prompt: use ConditioningConcat or a single CLIPTextEncode."
        )
    states, extras = conditioning[0][0], conditioning[0][1]
    if states.ndim != 3:
        raise ValueError(f"the {name} states must be [batch, tokens, width], got {tuple(states.shape)}.")
    pooled = extras.get("pooled_output")
    if pooled is None:
        raise ValueError(
            f"the {name} has no pooled CLIP-L output. Encode with DualCLIPLoader(type=hunyuan_video) "
            "(clip_l + llava_llama3) and CLIPTextEncode."
        )
    for what, width, want in (("states", states.shape[-1], text_dim), ("pooled vector", pooled.shape[-1], pooled_dim)):
        if want is not None and width != want:
            raise ValueError(
                f"the {name} {what} are {width} wide, HunyuanVideo needs {want}: it was made by another model's "
                "text encoder. Load clip_l + llava_llama3 with DualCLIPLoader(type=hunyuan_video)."
            )
    batch, length = states.shape[:2]
    mask = extras.get("attention_mask")
    mask = torch.ones(batch, length, dtype=torch.int64) if mask is None else mask.to(torch.int64).cpu()
    pad = max(0, min_tokens - length)
    states = torch.nn.functional.pad(states.cpu(), (0, 0, 0, pad))
    mask = torch.nn.functional.pad(mask, (0, pad))
    if pooled.shape[0] == 1 and batch > 1:
        pooled = pooled.expand(batch, -1)
    return PromptEmbeds(text_states=states, text_mask=mask, pooled=pooled.cpu())
