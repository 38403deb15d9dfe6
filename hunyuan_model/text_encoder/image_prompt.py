"""The LLM pass of HunyuanVideo-I2V's prompt encoding: the image's tokens inside the chat template.

Tencent's recipe (Tencent-Hunyuan/HunyuanVideo-I2V hyvideo/text_encoder/__init__.py:368-510; diffusers'
``HunyuanVideoImageToVideoPipeline._get_llama_prompt_embeds`` does the same): the template holds one
``<image>`` token (after the system header, index 5 with Llama-3's tokenizer), which LLaVA widens to the
576 image tokens. After the LLM, the result is ``[image states | prompt states]``: the image's 576
states taken every ``interleave``-th (Tencent: 2 for the first release, 4 for the fixed one,
inference.py:260-268), then the prompt's states from the end of the user header on, without the four
tokens ``<|eot_id|><|start_header_id|>assistant<|end_header_id|>`` (the closing ``\\n\\n`` and the
padding stay, masked as they were).
"""

from __future__ import annotations

import torch
from torch import nn

IMAGE_TOKEN = "<image>"
END_HEADER = "<|end_header_id|>"
_ASSISTANT_TOKENS = 4  # <|eot_id|> <|start_header_id|> assistant <|end_header_id|>


def encode_with_image_tokens(
    llm: nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    image_tokens: torch.Tensor,
    token_ids: dict[str, int],
    crop: int,
    skip: int,
    final_norm: bool,
    interleave: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(states [B, n/interleave + L - crop - 4, D], mask)`` for the template's ``ids``/``mask`` [B, L]
    (padded, one ``<image>`` each) and ``image_tokens`` [B, n, D] from the vision tower."""
    b, length = ids.shape
    n = image_tokens.shape[1]
    image_id, end_header = token_ids[IMAGE_TOKEN], token_ids[END_HEADER]
    where = (ids == image_id).nonzero()
    if where.shape[0] != b or not torch.equal(where[:, 0], torch.arange(b, device=ids.device)):
        raise ValueError(f"the prompt template must hold exactly one {IMAGE_TOKEN} token per prompt.")
    starts = where[:, 1]
    if not torch.all(starts == starts[0]):
        raise ValueError(f"the {IMAGE_TOKEN} token must be at the same place in every prompt.")
    p = int(starts[0])
    # b (L + n - 1): the one <image> widened to n positions, all of them real tokens.
    wide_ids = torch.cat((ids[:, :p], ids.new_full((b, n), image_id), ids[:, p + 1 :]), dim=1)
    wide_mask = torch.cat((mask[:, :p], mask.new_ones(b, n), mask[:, p + 1 :]), dim=1)
    embeds = llm.get_input_embeddings()(wide_ids)
    embeds[:, p : p + n] = image_tokens.to(embeds.dtype)
    positions = (wide_mask.cumsum(-1) - 1).masked_fill(wide_mask == 0, 1)
    hidden = llm(
        inputs_embeds=embeds, attention_mask=wide_mask, position_ids=positions, output_hidden_states=True
    ).hidden_states[-(skip + 1)]
    if final_norm:
        hidden = llm.norm(hidden)
    shift = n - 1
    states, masks = [], []
    for row in range(b):
        headers = (ids[row] == end_header).nonzero().flatten()
        # The assistant turn's "\n\n"; a prompt cut short loses the assistant header (then: the end).
        assistant = int(headers[-1]) + 1 if headers.numel() >= 3 else length
        cut = assistant - _ASSISTANT_TOKENS
        text = torch.cat((hidden[row, crop + shift : cut + shift], hidden[row, assistant + shift :]))
        text_mask = torch.cat((mask[row, crop:cut], mask[row, assistant:]))
        image = hidden[row, p : p + n][::interleave]
        states.append(torch.cat((image, text)))
        masks.append(torch.cat((text_mask.new_ones(image.shape[0]), text_mask)))
    return torch.stack(states), torch.stack(masks).long()
