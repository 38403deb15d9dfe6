"""Shape of a HunyuanVideo DiT: the released preset, a tiny test preset, and inference from weights."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Tencent fixes the head size at 128 and derives the head count from the hidden size.
HEAD_DIM = 128
RELEASED_ROPE_DIMS = (16, 56, 56)


@dataclass(frozen=True)
class DiTConfig:
    """Hyper-parameters of ``HYVideoDiffusionTransformer`` (spec section 1.1).

    ``rope_dim_list`` splits each head's dimensions between the t, h and w axes and must sum to the
    head size; ``guidance_embed`` is True for the released guidance-distilled checkpoint.
    """

    hidden_size: int = 3072
    heads: int = 24
    double_blocks: int = 20
    single_blocks: int = 40
    refiner_blocks: int = 2
    mlp_hidden: int = 12288
    in_channels: int = 16
    out_channels: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_dim: int = 4096
    pooled_dim: int = 768
    guidance_embed: bool = True
    rope_dim_list: tuple[int, int, int] = RELEASED_ROPE_DIMS
    rope_theta: float = 256.0

    def __post_init__(self) -> None:
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of heads {self.heads}.")
        if sum(self.rope_dim_list) != self.head_dim or any(d % 2 for d in self.rope_dim_list):
            raise ValueError(
                f"rope_dim_list {self.rope_dim_list} must be three even sizes summing to the head size {self.head_dim}."
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.heads

    @property
    def patch_features(self) -> int:
        """Output features per token: the channels of one (t, h, w) patch."""
        pt, ph, pw = self.patch_size
        return self.out_channels * pt * ph * pw

    @property
    def name(self) -> str:
        """The Tencent model name this config matches, or ``"custom"``."""
        for name, preset in NAMED_CONFIGS.items():
            if self == preset:
                return name
        return "custom"

    @classmethod
    def released(cls) -> DiTConfig:
        """``HYVideo-T/2-cfgdistill``, the only released text-to-video DiT (12.8B parameters)."""
        return cls()

    @classmethod
    def tiny(cls, **overrides: Any) -> DiTConfig:
        """Two heads of 128 (the smallest size diffusers accepts with the released RoPE split), 2+2 blocks."""
        fields = dict(
            hidden_size=256,
            heads=2,
            double_blocks=2,
            single_blocks=2,
            mlp_hidden=1024,
            text_dim=64,
            pooled_dim=32,
        )
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def from_state_dict(cls, shapes: Mapping[str, Any]) -> DiTConfig:
        """The config a Tencent-keyed state dict with these keys and shapes describes.

        ``shapes`` maps each key to a tensor (real or ``meta``), a ``torch.Size`` or a tuple, so a
        loader can infer the model from a file header without reading any data. Only the keys the
        sizes are read from are needed (``ValueError`` naming a missing one); whether every key
        fits is checked against the model itself when it is built (:func:`.weights.fitting_model`).
        """
        return _infer({key: _shape(value) for key, value in shapes.items()})


NAMED_CONFIGS = {
    "HYVideo-T/2-cfgdistill": DiTConfig(),
    "HYVideo-T/2": DiTConfig(guidance_embed=False),
}


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in (value.shape if hasattr(value, "shape") else value))


def _block_count(shapes: Mapping[str, tuple], prefix: str) -> int:
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.")
    indices = {int(m.group(1)) for key in shapes if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def _require(shapes: Mapping[str, tuple], key: str) -> tuple[int, ...]:
    if key in shapes:
        return shapes[key]
    hint = ""
    if any(k.startswith(("transformer_blocks.", "x_embedder.")) for k in shapes):
        hint = " These look like diffusers keys: convert them with diffusers_to_tencent() first."
    elif prefixes := sorted({k.split(".", 1)[0] for k in shapes if k.endswith("img_in.proj.weight")} - {"img_in"}):
        hint = f" The keys carry a prefix ({prefixes[0]}...): strip it first."
    raise ValueError(
        f"not a HunyuanVideo DiT state dict: key {key!r} is missing ({len(shapes)} keys, e.g. {sorted(shapes)[:3]}).{hint}"
    )


def _infer(shapes: Mapping[str, tuple]) -> DiTConfig:
    hidden, in_channels, *patch = _require(shapes, "img_in.proj.weight")
    head_dim = shapes.get("double_blocks.0.img_attn_q_norm.weight", shapes.get("single_blocks.0.q_norm.weight"))
    head_dim = head_dim[0] if head_dim else HEAD_DIM
    return DiTConfig(
        hidden_size=hidden,
        heads=hidden // head_dim,
        double_blocks=_block_count(shapes, "double_blocks"),
        single_blocks=_block_count(shapes, "single_blocks"),
        refiner_blocks=_block_count(shapes, "txt_in.individual_token_refiner.blocks"),
        mlp_hidden=_mlp_hidden(shapes, hidden),
        in_channels=in_channels,
        out_channels=_require(shapes, "final_layer.linear.weight")[0] // (patch[0] * patch[1] * patch[2]),
        patch_size=tuple(patch),
        text_dim=_require(shapes, "txt_in.input_embedder.weight")[1],
        pooled_dim=_require(shapes, "vector_in.in_layer.weight")[1],
        guidance_embed="guidance_in.mlp.0.weight" in shapes,
        rope_dim_list=scaled_rope_dims(head_dim),
    )


def _mlp_hidden(shapes: Mapping[str, tuple], hidden: int) -> int:
    if "double_blocks.0.img_mlp.fc1.weight" in shapes:
        return shapes["double_blocks.0.img_mlp.fc1.weight"][0]
    if "single_blocks.0.linear1.weight" in shapes:
        return shapes["single_blocks.0.linear1.weight"][0] - 3 * hidden
    return _require(shapes, "txt_in.individual_token_refiner.blocks.0.mlp.fc1.weight")[0]


def scaled_rope_dims(head_dim: int) -> tuple[int, int, int]:
    """Tencent's (16, 56, 56) split scaled to another head size: t gets 1/8, h and w share the rest."""
    t = head_dim * RELEASED_ROPE_DIMS[0] // HEAD_DIM
    hw = (head_dim - t) // 2
    dims = (t, hw, head_dim - t - hw)
    if any(d % 2 for d in dims) or t == 0:
        raise ValueError(f"head size {head_dim} has no RoPE split like Tencent's (16, 56, 56); got {dims}.")
    return dims
