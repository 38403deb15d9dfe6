"""Shapes of the two text encoders: LLaVA-Llama-3-8B's language model and CLIP-L's text tower.

Checkpoints carry their sizes in their weights, so a loader reads sizes from tensor shapes and takes
only what shapes cannot tell (head size, RoPE base, norm eps) from a ``config.json`` when there is
one, else from the released model. ComfyUI's single-file text encoders have no config at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

LLM_DIM = 4096  # released LLaVA-Llama-3-8B hidden size: the DiT's text input width
CLIP_DIM = 768  # released CLIP-L width: the DiT's pooled-vector input width


@dataclass(frozen=True)
class LlmConfig:
    """A Llama decoder as HunyuanVideo uses it (only the base model: no LM head)."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rope_theta: float = 500000.0
    rms_norm_eps: float = 1e-5
    max_positions: int = 8192
    attention_bias: bool = False

    @classmethod
    def released(cls) -> LlmConfig:
        """llava-llama-3-8b-v1_1's language model (Llama-3-8B with LLaVA's 128320-row vocabulary)."""
        return cls(
            vocab_size=128320,
            hidden_size=4096,
            num_layers=32,
            num_heads=32,
            num_kv_heads=8,
            head_dim=128,
            intermediate_size=14336,
        )

    @classmethod
    def tiny(cls) -> LlmConfig:
        """A few-MB stand-in that still takes the real tokenizer's ids (the vocabulary stays full).

        Heads keep the released head size (128) so that a single-file checkpoint without a config
        reads back with the released defaults, exactly as a real ComfyUI file does.
        """
        return cls(
            vocab_size=128320,
            hidden_size=64,
            num_layers=4,
            num_heads=2,
            num_kv_heads=1,
            head_dim=128,
            intermediate_size=128,
        )

    @classmethod
    def from_shapes(cls, shapes: Mapping[str, tuple[int, ...]], hints: Mapping[str, Any] | None = None) -> LlmConfig:
        """Sizes from ``LlamaModel`` state-dict shapes; head size, RoPE base and eps from ``hints``
        (a transformers ``config.json`` dict) or the released model."""
        hints = dict(hints or {})
        released = cls.released()
        vocab_size, hidden_size = shapes["embed_tokens.weight"]
        num_layers = 1 + max(int(key.split(".")[1]) for key in shapes if key.startswith("layers."))
        q_out = shapes["layers.0.self_attn.q_proj.weight"][0]
        kv_out = shapes["layers.0.self_attn.k_proj.weight"][0]
        head_dim = hints.get("head_dim") or (
            hidden_size // hints["num_attention_heads"] if "num_attention_heads" in hints else released.head_dim
        )
        if q_out % head_dim or kv_out % head_dim:
            raise ValueError(
                f"attention projections of {q_out} and {kv_out} rows do not split into heads of {head_dim}; "
                "the checkpoint is not a Llama-3 language model."
            )
        rope = hints.get("rope_parameters") or {}
        return cls(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=q_out // head_dim,
            num_kv_heads=kv_out // head_dim,
            head_dim=head_dim,
            intermediate_size=shapes["layers.0.mlp.gate_proj.weight"][0],
            rope_theta=float(rope.get("rope_theta") or hints.get("rope_theta") or released.rope_theta),
            rms_norm_eps=float(hints.get("rms_norm_eps", released.rms_norm_eps)),
            max_positions=int(hints.get("max_position_embeddings", released.max_positions)),
            attention_bias="layers.0.self_attn.q_proj.bias" in shapes,
        )

    def to_transformers(self):
        """The equivalent ``transformers.LlamaConfig``."""
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            intermediate_size=self.intermediate_size,
            rope_theta=self.rope_theta,
            rms_norm_eps=self.rms_norm_eps,
            max_position_embeddings=self.max_positions,
            attention_bias=self.attention_bias,
            tie_word_embeddings=False,
        )


@dataclass(frozen=True)
class ClipConfig:
    """CLIP's text tower (``CLIPTextModel``); HunyuanVideo uses its pooled output only."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int = 77
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    # openai/clip-vit-large-patch14 says 2, which makes transformers pool at the highest token id:
    # the first <|endoftext|>, the same place as looking that id up.
    eos_token_id: int = 2

    @classmethod
    def released(cls) -> ClipConfig:
        """openai/clip-vit-large-patch14's text tower (CLIP-L)."""
        return cls(vocab_size=49408, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)

    @classmethod
    def tiny(cls) -> ClipConfig:
        return replace(cls.released(), hidden_size=128, num_layers=2, num_heads=2, intermediate_size=256)

    @classmethod
    def from_shapes(cls, shapes: Mapping[str, tuple[int, ...]], hints: Mapping[str, Any] | None = None) -> ClipConfig:
        """Sizes from CLIP text-tower shapes (names after ``text_model.``); heads (64 wide unless ``hints`` say so),
        eps and activation from ``hints`` or CLIP-L."""
        hints = dict(hints or {})
        released = cls.released()
        vocab_size, hidden_size = shapes["embeddings.token_embedding.weight"]
        layers = {int(key.split(".")[2]) for key in shapes if key.startswith("encoder.layers.")}
        return cls(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=1 + max(layers),
            num_heads=int(hints.get("num_attention_heads", max(1, hidden_size // 64))),
            intermediate_size=shapes["encoder.layers.0.mlp.fc1.weight"][0],
            max_positions=shapes["embeddings.position_embedding.weight"][0],
            layer_norm_eps=float(hints.get("layer_norm_eps", released.layer_norm_eps)),
            hidden_act=str(hints.get("hidden_act", released.hidden_act)),
            eos_token_id=int(hints.get("eos_token_id", released.eos_token_id)),
        )

    def to_transformers(self):
        """The equivalent ``transformers.CLIPTextConfig``."""
        from transformers import CLIPTextConfig

        return CLIPTextConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_positions,
            layer_norm_eps=self.layer_norm_eps,
            hidden_act=self.hidden_act,
            eos_token_id=self.eos_token_id,
            bos_token_id=0,
            pad_token_id=1,
        )
