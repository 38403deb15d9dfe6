"""The dual-stream (``double_blocks``) and single-stream (``single_blocks``) transformer blocks.

Both attend jointly over ``[video tokens, text tokens]`` (video first). Q/K are RMS-normalised per head,
then only the video part is rotated by RoPE. Every block is called as
``block(..., vec, rope, attn)`` with ``vec`` ``[B, C]`` the conditioning vector, ``rope`` the
``(cos, sin)`` tables of the video tokens and ``attn`` the :class:`AttentionSpec`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..attention import attention
from .layers import MLP, ModulateDiT, RMSNorm, norm_modulate
from .rope import rotate_video_tokens_


@dataclass(frozen=True)
class AttentionSpec:
    """How a forward attends: the kernel name and the ``[B, L]`` real-token mask (None = no padding).

    ``enhance``, when set (by a runner, see :mod:`hunyuan_model.extras`), maps the video tokens' rotated
    ``q, k`` to a ``[B, 1, 1]`` factor that scales their attention output (Enhance-A-Video).
    """

    backend: str = "sdpa"
    token_mask: torch.Tensor | None = None
    enhance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


def split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``b l (k h d) -> k * [b l h d]`` (views): q, k, v rows, each head-major, as Tencent packs them."""
    return qkv.unflatten(-1, (3, heads, -1)).unbind(2)


class DoubleStreamBlock(nn.Module):
    """Separate weights for the video (``img_*``) and text (``txt_*``) streams, one joint attention."""

    def __init__(self, hidden: int, heads: int, mlp_hidden: int, **factory) -> None:
        super().__init__()
        self.heads = heads
        head_dim = hidden // heads
        for stream in ("img", "txt"):
            setattr(self, f"{stream}_mod", ModulateDiT(hidden, 6, **factory))
            setattr(self, f"{stream}_attn_qkv", nn.Linear(hidden, 3 * hidden, **factory))
            setattr(self, f"{stream}_attn_q_norm", RMSNorm(head_dim, **factory))
            setattr(self, f"{stream}_attn_k_norm", RMSNorm(head_dim, **factory))
            setattr(self, f"{stream}_attn_proj", nn.Linear(hidden, hidden, **factory))
            setattr(self, f"{stream}_mlp", MLP(hidden, mlp_hidden, "gelu_tanh", **factory))

    def forward(
        self,
        img: torch.Tensor,
        txt: torch.Tensor,
        vec: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        attn: AttentionSpec,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        img_mod = self.img_mod(vec)
        txt_mod = self.txt_mod(vec)
        img_q, img_k, img_v = self._qkv("img", img, img_mod)
        img_q, img_k = rotate_video_tokens_(img_q, *rope), rotate_video_tokens_(img_k, *rope)
        boost = attn.enhance(img_q, img_k) if attn.enhance is not None else None
        txt_q, txt_k, txt_v = self._qkv("txt", txt, txt_mod)
        q = torch.cat((img_q, txt_q), dim=1)
        del img_q, txt_q
        k = torch.cat((img_k, txt_k), dim=1)
        del img_k, txt_k
        v = torch.cat((img_v, txt_v), dim=1)
        del img_v, txt_v
        out = attention(q, k, v, attn.token_mask, attn.backend)
        del q, k, v
        n_img = img.shape[1]
        if boost is not None:
            out[:, :n_img] *= boost.to(out.dtype)
        img = self._residual("img", img, out[:, :n_img], img_mod)
        txt = self._residual("txt", txt, out[:, n_img:], txt_mod)
        return img, txt

    def _qkv(self, stream: str, x: torch.Tensor, mod: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        shift, scale = mod[0], mod[1]
        q, k, v = split_heads(getattr(self, f"{stream}_attn_qkv")(norm_modulate(x, shift, scale)), self.heads)
        return getattr(self, f"{stream}_attn_q_norm")(q), getattr(self, f"{stream}_attn_k_norm")(k), v

    def _residual(
        self, stream: str, x: torch.Tensor, attn_out: torch.Tensor, mod: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        _, _, gate_attn, shift, scale, gate_mlp = mod
        x = x + getattr(self, f"{stream}_attn_proj")(attn_out) * gate_attn.unsqueeze(1)
        return x + getattr(self, f"{stream}_mlp")(norm_modulate(x, shift, scale)) * gate_mlp.unsqueeze(1)


class SingleStreamBlock(nn.Module):
    """One stream over the joined tokens: ``linear1`` yields q|k|v|mlp, ``linear2`` merges attention and MLP."""

    def __init__(self, hidden: int, heads: int, mlp_hidden: int, **factory) -> None:
        super().__init__()
        self.heads = heads
        self.hidden = hidden
        head_dim = hidden // heads
        self.linear1 = nn.Linear(hidden, 3 * hidden + mlp_hidden, **factory)
        self.linear2 = nn.Linear(hidden + mlp_hidden, hidden, **factory)
        self.q_norm = RMSNorm(head_dim, **factory)
        self.k_norm = RMSNorm(head_dim, **factory)
        self.modulation = ModulateDiT(hidden, 3, **factory)

    def forward(
        self, x: torch.Tensor, vec: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], attn: AttentionSpec
    ) -> torch.Tensor:
        shift, scale, gate = self.modulation(vec)
        c = self.hidden
        fused = self.linear1(norm_modulate(x, shift, scale))  # b l (q k v mlp), the block's largest tensor
        q, k, v = split_heads(fused[..., : 3 * c], self.heads)
        q = rotate_video_tokens_(self.q_norm(q), *rope)
        k = rotate_video_tokens_(self.k_norm(k), *rope)
        n_img = rope[0].shape[0]
        boost = attn.enhance(q[:, :n_img], k[:, :n_img]) if attn.enhance is not None else None
        out = attention(q, k, v, attn.token_mask, attn.backend)
        del q, k, v
        if boost is not None:
            out[:, :n_img] *= boost.to(out.dtype)
        # linear2 reads [attention | gelu(mlp)]: built inside linear1's output, over v, without another copy.
        torch.ops.aten.gelu_(fused[..., 3 * c :], approximate="tanh")
        fused[..., 2 * c : 3 * c] = out
        del out
        return x + self.linear2(fused[..., 2 * c :]) * gate.unsqueeze(1)
