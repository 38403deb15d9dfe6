"""Floating-point operations of one HunyuanVideo DiT forward, counted from the architecture.

Independent of the pack: :func:`dit_forward_flops` takes any object with :class:`DiTConfig`'s fields
(``hidden_size``, ``heads``, ``mlp_hidden``, ``double_blocks``, ``single_blocks``, ``refiner_blocks``,
``patch_size``, ``in_channels``, ``out_channels``, ``text_dim``, ``pooled_dim``, ``guidance_embed``).

THE COUNT. A multiply-add is 2 FLOPs; a Linear ``in -> out`` over ``n`` rows is ``2 n in out`` (biases,
norms, activations, RoPE and softmax are not counted: together they are well under 1% at video sizes).
With ``Nv = T/pt * H/ph * W/pw`` video tokens, ``L`` text tokens, ``N = Nv + L``, hidden ``C``, MLP width
``M`` and ``B`` videos per forward (every term below is times ``B``):

- each double block: per stream (video ``Nv`` rows, text ``L`` rows) qkv ``C -> 3C``, proj ``C -> C``,
  fc1 ``C -> M``, fc2 ``M -> C``; joint attention ``4 N^2 C`` (``Q K^T`` and ``P V``, ``2 N^2 C`` each,
  summed over heads); modulation ``C -> 6C`` per stream on one row;
- each single block: ``N`` rows through linear1 ``C -> 3C + M`` and linear2 ``C + M -> C``; attention
  ``4 N^2 C``; modulation ``C -> 3C`` on one row;
- the text refiner (``txt_in``): input ``text_dim -> C`` over ``L`` rows, per refiner block qkv, proj,
  MLP ``C -> 4C -> C`` over ``L`` rows and attention ``4 L^2 C``; its timestep and text-vector embedders
  on one row;
- ``img_in`` (a patch convolution: ``in_channels * pt * ph * pw -> C`` per video token), the timestep,
  guidance and pooled-text embedders (one row), and the final layer (``C -> 2C`` on one row,
  ``C -> out_channels * pt * ph * pw`` over ``Nv`` rows).

At 1280x720x129 with 256 text tokens this gives 1.62 PFLOP of Linears and 10.45 PFLOP of attention
(12.07 PFLOP in all, attention 87%), the figures of ``shared/reference/users_and_performance.md``
section 5. ``tests/test_gpu_suite.py`` checks the count against ``torch.utils.flop_counter`` on a tiny
DiT. Model FLOP utilisation (MFU) is this count over (seconds x the device's dense bf16 rate).
"""

from __future__ import annotations

from dataclasses import dataclass

FREQUENCY_DIM = 256  # the sinusoid width the timestep and guidance embedders read


@dataclass(frozen=True)
class ForwardFlops:
    """FLOPs of one forward: ``linear`` (every Linear and the patch convolution) and ``attention``."""

    linear: int
    attention: int

    @property
    def total(self) -> int:
        return self.linear + self.attention

    def as_dict(self) -> dict[str, int]:
        return {"linear": self.linear, "attention": self.attention, "total": self.total}


def video_tokens(config, latent_shape: tuple[int, ...]) -> int:
    """``Nv``: patches of one latent ``[B, C, T, H, W]``."""
    _, _, t, h, w = latent_shape
    pt, ph, pw = config.patch_size
    return (t // pt) * (h // ph) * (w // pw)


def dit_forward_flops(config, latent_shape: tuple[int, ...], text_tokens: int) -> ForwardFlops:
    """FLOPs of one forward over latents ``[B, 16, T, H, W]`` with ``text_tokens`` real text tokens (module doc)."""
    b = latent_shape[0]
    c, m = config.hidden_size, config.mlp_hidden
    nv, nt = video_tokens(config, latent_shape), text_tokens
    n = nv + nt
    pt, ph, pw = config.patch_size
    patch = pt * ph * pw

    def linear(rows: int, fan_in: int, fan_out: int) -> int:
        return 2 * rows * fan_in * fan_out

    stream = linear(1, c, 3 * c) + linear(1, c, c) + linear(1, c, m) + linear(1, m, c)  # per row
    double = (nv + nt) * stream + 2 * linear(1, c, 6 * c)
    single = linear(n, c, 3 * c + m) + linear(n, c + m, c) + linear(1, c, 3 * c)
    refiner_block = nt * (linear(1, c, 3 * c) + linear(1, c, c) + linear(1, c, 4 * c) + linear(1, 4 * c, c))
    refiner_block += linear(1, c, 2 * c)
    embedder = linear(1, FREQUENCY_DIM, c) + linear(1, c, c)  # time_in, guidance_in, the refiner's t_embedder
    embedders = (2 + config.guidance_embed) * embedder + linear(1, config.pooled_dim, c) + linear(1, c, c)
    txt_in = linear(nt, config.text_dim, c) + linear(1, config.text_dim, c) + linear(1, c, c)
    txt_in += config.refiner_blocks * refiner_block
    ends = linear(nv, config.in_channels * patch, c) + linear(1, c, 2 * c) + linear(nv, c, config.out_channels * patch)
    linears = config.double_blocks * double + config.single_blocks * single + txt_in + embedders + ends
    attention = 4 * c * ((config.double_blocks + config.single_blocks) * n * n + config.refiner_blocks * nt * nt)
    return ForwardFlops(b * linears, b * attention)


def mfu(flops: int, seconds: float, peak_flops_per_s: float) -> float:
    """Model FLOP utilisation: the share of ``peak_flops_per_s`` that ``flops`` in ``seconds`` amounts to."""
    return flops / seconds / peak_flops_per_s
