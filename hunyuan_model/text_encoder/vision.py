"""LLaVA's vision tower and projector: the image of HunyuanVideo-I2V as LLM input tokens.

HunyuanVideo-I2V encodes its prompt with the whole LLaVA-Llama-3 model: a CLIP ViT-L/14-336 reads
the image, the states of its second-to-last layer without the class token (576 patches) go through
LLaVA's two-layer projector into the LLM's width and take the place of the ``<image>`` token
(Tencent-Hunyuan/HunyuanVideo-I2V hyvideo/text_encoder/__init__.py:368-383 runs transformers'
``LlavaForConditionalGeneration``; xtuner/llava-llama-3-8b-v1_1-transformers' config sets
``vision_feature_layer`` -2 and strategy ``default``). The weights are where users have them:
ComfyUI's ``llava_llama3_vision.safetensors`` in ``clip_vision`` (``vision_model.*`` and
``multi_modal_projector.*``, comfy/clip_vision.py:124-126) or the full
``llava-llama-3-8b-v1_1-transformers`` folder (``vision_tower.vision_model.*``). Read through
:func:`hunyuan_model.checkpoint.open_checkpoint`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import CheckpointError, open_checkpoint

log = logging.getLogger("HunyuanVideo")

# The image processor of llava-llama-3-8b-v1_1 (CLIPImageProcessor): short side to 336, centre crop,
# OpenAI CLIP's mean and std.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VISION_FILE_ADVICE = (
    "HunyuanVideo-I2V's text encoding needs LLaVA's vision tower: put llava_llama3_vision.safetensors "
    "(Comfy-Org/HunyuanVideo_repackaged, split_files/clip_vision) in models/clip_vision and choose it, or use the "
    "full llava-llama-3-8b-v1_1-transformers folder"
)


@dataclass(frozen=True)
class VisionConfig:
    """CLIP vision tower sizes and the projector's output width (the LLM's hidden size)."""

    hidden_size: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    intermediate_size: int = 4096
    image_size: int = 336
    patch_size: int = 14
    text_hidden_size: int = 4096

    @classmethod
    def tiny(cls, text_hidden_size: int = 64) -> VisionConfig:
        """A few-MB tower that still reads 336-pixel images into 576 tokens (heads of 64, as released:
        files carry no head count)."""
        return cls(hidden_size=128, num_layers=3, num_heads=2, intermediate_size=256, text_hidden_size=text_hidden_size)

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_transformers(self):
        from transformers import CLIPVisionConfig

        return CLIPVisionConfig(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
        )

    @classmethod
    def from_shapes(cls, shapes: dict[str, tuple[int, ...]]) -> VisionConfig:
        """Sizes from the tower's shapes (keys without ``vision_model.``) and the projector's."""
        hidden, _, patch, _ = shapes["embeddings.patch_embedding.weight"]
        positions = shapes["embeddings.position_embedding.weight"][0]
        layers = 1 + max(int(k.split(".")[2]) for k in shapes if k.startswith("encoder.layers."))
        return cls(
            hidden_size=hidden,
            num_layers=layers,
            num_heads=max(1, hidden // 64),  # not in the weights: CLIP ViT-L's heads are 64 wide
            intermediate_size=shapes["encoder.layers.0.mlp.fc1.weight"][0],
            image_size=round((positions - 1) ** 0.5) * patch,
            patch_size=patch,
            text_hidden_size=shapes["multi_modal_projector.linear_2.weight"][0],
        )


class LlavaProjector(nn.Module):
    """``linear_2(gelu(linear_1(x)))``: vision width to the LLM's (LLaVA's ``projector_hidden_act`` gelu)."""

    def __init__(self, vision: int, text: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(vision, text)
        self.linear_2 = nn.Linear(text, text)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(x)))


class LlavaVision(nn.Module):
    """The vision tower (transformers' ``CLIPVisionModel``) and the projector.

    Files name the tower's tensors ``vision_model.*`` (``vision_tower.vision_model.*`` in LLaVA folders);
    transformers 5 names them without that prefix.
    """

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        from transformers import CLIPVisionModel

        self.config = config
        self.tower = CLIPVisionModel(config.to_transformers())
        self.multi_modal_projector = LlavaProjector(config.hidden_size, config.text_hidden_size)

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 336, 336]`` (from :func:`clip_pixels`) -> image tokens ``[B, 576, D_llm]``."""
        dtype = self.multi_modal_projector.linear_1.weight.dtype
        states = self.tower(pixel_values.to(dtype), output_hidden_states=True).hidden_states[-2]
        return self.multi_modal_projector(states[:, 1:])  # without the class token


def clip_pixels(image: torch.Tensor, size: int = 336) -> torch.Tensor:
    """ComfyUI IMAGE ``[N, H, W, C]`` in 0..1 -> normalised ``[N, 3, size, size]`` as CLIPImageProcessor makes
    them: alpha dropped, grey repeated, short side to ``size`` (bicubic; transformers resizes with PIL, so
    results differ slightly for images of another size), centre crop."""
    pixels = image.float()
    pixels = pixels[..., :1].expand(*pixels.shape[:-1], 3) if pixels.shape[-1] in (1, 2) else pixels[..., :3]
    pixels = pixels.permute(0, 3, 1, 2)
    h, w = pixels.shape[2:]
    if min(h, w) != size:
        scale = size / min(h, w)
        resized = (max(size, round(h * scale)), max(size, round(w * scale)))
        pixels = F.interpolate(pixels, size=resized, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    top, left = (pixels.shape[2] - size) // 2, (pixels.shape[3] - size) // 2
    pixels = pixels[:, :, top : top + size, left : left + size]
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def load_vision(path: str | Path, dtype: torch.dtype = torch.float16) -> LlavaVision:
    """The vision tower and projector from ComfyUI's ``llava_llama3_vision.safetensors`` or a full LLaVA folder."""
    path = Path(path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    readers = [open_checkpoint(file) for file in files]
    where: dict[str, tuple] = {}  # model key -> (reader, file key)
    for reader in readers:
        for key in reader.keys():
            name = key.removeprefix("vision_tower.")
            if name.startswith("vision_model."):
                where["tower." + name.removeprefix("vision_model.")] = (reader, key)
            elif name.startswith("multi_modal_projector."):
                where[name] = (reader, key)
    has_tower = any(k.startswith("tower.") for k in where)
    if "multi_modal_projector.linear_2.weight" not in where or not has_tower:
        found = "a CLIP vision model without LLaVA's projector" if has_tower else "no vision tower"
        raise CheckpointError(f"'{path.name}' holds {found}. {VISION_FILE_ADVICE}.")
    shapes = {name.removeprefix("tower."): tuple(reader.infos()[key].shape) for name, (reader, key) in where.items()}
    config = VisionConfig.from_shapes(shapes)
    with torch.device("meta"):
        model = LlavaVision(config)
    state = {}
    for name in model.state_dict():
        if name not in where:
            raise CheckpointError(f"'{path.name}' is incomplete: it has no tensor for {name!r}. Download it again.")
        reader, key = where[name]
        state[name] = reader.load(key).dense(dtype, "cpu")
    model.load_state_dict(state, strict=True, assign=True)
    embeddings = model.tower.embeddings
    embeddings.position_ids = torch.arange(embeddings.num_positions).expand(1, -1)  # computed, still on meta
    log.info("HunyuanVideo: vision tower %s loaded: %s", path.name, config)
    return model.eval().requires_grad_(False)
