"""The text encoder as the sampler sees it: prompts in, prompt states, mask and pooled vector out.

LLM: the prompt in a chat template, padded to a fixed length, through LLaVA-Llama-3; the states of
decoder layer ``n - hidden_state_skip_layer`` (the third-to-last state, no final norm, by
default), cut to the user turn. CLIP-L: the bare prompt, 77 tokens, pooled output. This is
Tencent's ``TextEncoder.encode`` and diffusers' ``HunyuanVideoPipeline.encode_prompt``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from ..conditioning import PromptEmbeds, TextEmbeds
from .loading import LlmWeights, load_clip, load_llm, module_bytes
from .templates import CLIP_TOKENS, MAX_PROMPT_TOKENS, VIDEO, PromptTemplate, crop_start, sequence_length
from .tokenizers import check_tokenizer, find_tokenizer, load_tokenizer

log = logging.getLogger("HunyuanVideo")

Models = tuple[nn.Module, nn.Module]


class HunyuanTextEncoder:
    """LLaVA-Llama-3's ``LlamaModel`` and CLIP-L's ``CLIPTextModel`` with their fast tokenizers.

    Encoding runs on whatever device the models are on (:meth:`to`); results come back on the CPU.
    With a ``reload`` callable the weights can be dropped (:meth:`release`) and come back on the
    next encode.
    """

    def __init__(
        self,
        llm: nn.Module,
        llm_tokenizer,
        clip: nn.Module,
        clip_tokenizer,
        reload: Callable[[], Models] | None = None,
    ) -> None:
        check_tokenizer(llm_tokenizer, "llm", llm.config.vocab_size, _origin(llm_tokenizer))
        check_tokenizer(clip_tokenizer, "clip", clip.config.vocab_size, _origin(clip_tokenizer))
        self.llm, self.clip = llm, clip
        self.llm_tokenizer, self.clip_tokenizer = llm_tokenizer, clip_tokenizer
        self._reload = reload
        self._device = torch.device("cpu")
        self._llm_layers = llm.config.num_hidden_layers

    @property
    def loaded(self) -> bool:
        return self.llm is not None

    @property
    def device(self) -> torch.device:
        return self._device

    def memory_bytes(self) -> int:
        """Bytes the weights take on a device (what must fit before :meth:`to` a GPU)."""
        return module_bytes(self.llm) + module_bytes(self.clip) if self.loaded else 0

    def parameters(self) -> Iterator[nn.Parameter]:
        """Both models' parameters (none while released), so a placement can size and locate them."""
        for model in (self.llm, self.clip) if self.loaded else ():
            yield from model.parameters()

    def buffers(self) -> Iterator[torch.Tensor]:
        for model in (self.llm, self.clip) if self.loaded else ():
            yield from model.buffers()

    def to(self, device: torch.device | str) -> HunyuanTextEncoder:
        self._device = torch.device(device)
        if self.loaded:
            self.llm.to(self._device)
            self.clip.to(self._device)
        return self

    def release(self) -> None:
        """Drop the weights (RAM and VRAM); they are read again from disk on the next encode."""
        if self._reload is None:
            raise RuntimeError("this text encoder was built from models in memory and cannot reload them.")
        self.llm = self.clip = None
        gc.collect()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
        self._device = torch.device("cpu")

    def load(self) -> None:
        """Read the weights again after :meth:`release` (encoding does this by itself)."""
        if not self.loaded:
            self.llm, self.clip = self._reload()
            self.to(self._device)

    @torch.no_grad()
    def encode(
        self,
        prompts: str | Sequence[str],
        template: PromptTemplate = VIDEO,
        hidden_state_skip_layer: int = 2,
        apply_final_norm: bool = False,
        max_prompt_tokens: int = MAX_PROMPT_TOKENS,
    ) -> PromptEmbeds:
        """Encode one prompt or a batch; prompts are stripped as in Tencent's pipeline.

        ``text_states`` [B, L, D] (L = 256 for the video template, 315 for the image one, see
        :func:`sequence_length`), ``text_mask`` [B, L] int64 (prompt and closing ``<|eot_id|>``),
        ``pooled`` [B, 768]; in the models' dtype, on the CPU.
        """
        if not 0 <= hidden_state_skip_layer < self._llm_layers:
            raise ValueError(
                f"hidden_state_skip_layer must be between 0 and {self._llm_layers - 1} for this "
                f"{self._llm_layers}-layer LLM, got {hidden_state_skip_layer}."
            )
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        prompts = [prompt.strip() for prompt in prompts]
        self.load()
        states, mask = self._encode_llm(prompts, template, hidden_state_skip_layer, apply_final_norm, max_prompt_tokens)
        pooled = self._encode_clip(prompts)
        return PromptEmbeds(text_states=states.cpu(), text_mask=mask.cpu(), pooled=pooled.cpu())

    def encode_prompt(
        self,
        prompt: str,
        negative_prompt: str | None = None,
        cfg_scale: float = 1.0,
        **options,
    ) -> TextEmbeds:
        """The sampler's conditioning. The negative prompt (empty when not given) is encoded only
        for true CFG, ``cfg_scale`` > 1; ``options`` go to :meth:`encode`.

        Tencent's ``sample_video.py`` replaces an empty negative prompt with its own ("Aerial view,
        aerial view, overexposed, low quality, deformation, a poor composition, bad hands, bad teeth,
        bad eyes, bad limbs, distortion"); here empty stays empty, as in diffusers and ComfyUI.
        """
        positive = self.encode(prompt, **options)
        negative = self.encode(negative_prompt or "", **options) if cfg_scale > 1.0 else None
        return TextEmbeds(positive=positive, negative=negative, cfg_scale=cfg_scale)

    def _encode_llm(
        self, prompts: list[str], template: PromptTemplate, skip: int, final_norm: bool, max_prompt_tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokenizer = self.llm_tokenizer
        crop = crop_start(tokenizer, template)
        length = sequence_length(tokenizer, template, max_prompt_tokens)
        if crop >= length:
            raise ValueError(f"the {template.name} template alone is {crop} tokens, leaving no room for the prompt.")
        texts = [template.format(prompt) for prompt in prompts]
        tokens = tokenizer(texts, max_length=length, padding="max_length", truncation=True, return_tensors="pt")
        for number, full in enumerate(tokenizer(texts).input_ids, 1):
            if len(full) > length:
                log.warning(
                    "HunyuanVideo: prompt %d is %d LLM tokens with the template's closing tokens; the LLM reads "
                    "%d, so the last %d were cut.",
                    number,
                    len(full) - crop,
                    length - crop,
                    len(full) - length,
                )
        ids = tokens.input_ids.to(self._device)
        mask = tokens.attention_mask.to(self._device)
        hidden = self.llm(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        states = hidden[-(skip + 1)]
        if final_norm:
            states = self.llm.norm(states)
        return states[:, crop:], mask[:, crop:].long()

    def _encode_clip(self, prompts: list[str]) -> torch.Tensor:
        tokenizer = self.clip_tokenizer
        length = min(CLIP_TOKENS, self.clip.config.max_position_embeddings)
        tokens = tokenizer(prompts, max_length=length, padding="max_length", truncation=True, return_tensors="pt")
        for number, full in enumerate(tokenizer(prompts).input_ids, 1):
            if len(full) > length:
                log.warning(
                    "HunyuanVideo: prompt %d is %d CLIP tokens; CLIP reads %d, so the last %d were cut "
                    "(only from CLIP's pooled vector; the LLM reads up to %d).",
                    number,
                    len(full),
                    length,
                    len(full) - length,
                    MAX_PROMPT_TOKENS,
                )
        output = self.clip(
            input_ids=tokens.input_ids.to(self._device), attention_mask=tokens.attention_mask.to(self._device)
        )
        return output.pooler_output


def load_text_encoder(
    llm_path: str | Path,
    clip_path: str | Path,
    dtype: torch.dtype = torch.float16,
    llm_weights: LlmWeights = "default",
    llm_tokenizer_dirs: Sequence[Path] = (),
    clip_tokenizer_dirs: Sequence[Path] = (),
    nf4_device: torch.device | str = "cuda",
) -> HunyuanTextEncoder:
    """Both encoders and their tokenizers, on the CPU.

    ``llm_path``: a transformers folder (Tencent's text-only ``llava-llama-3-8b-text-encoder-tokenizer``
    or the full ``llava-llama-3-8b-v1_1-transformers``) or ComfyUI's ``llava_llama3_fp16`` /
    ``llava_llama3_fp8_scaled`` safetensors. ``clip_path``: a CLIP-L transformers folder or
    ``clip_l.safetensors``. Tokenizers are searched beside the models and then in the extra
    ``*_tokenizer_dirs`` (see :func:`tokenizer_candidates`). ``llm_weights``: ``default``,
    ``fp8_e4m3fn`` (half the memory) or ``nf4`` (bitsandbytes on CUDA; those layers stay on
    ``nf4_device``).
    """
    llm_path, clip_path = Path(llm_path), Path(clip_path)
    llm_tokenizer_dir = find_tokenizer(llm_path, "llm", llm_tokenizer_dirs)
    clip_tokenizer_dir = find_tokenizer(clip_path, "clip", clip_tokenizer_dirs)
    llm_tokenizer = load_tokenizer(llm_tokenizer_dir, "llm")
    clip_tokenizer = load_tokenizer(clip_tokenizer_dir, "clip")

    def read_models() -> Models:
        llm = load_llm(llm_path, dtype=dtype, weights=llm_weights, device=nf4_device)
        return llm, load_clip(clip_path, dtype=dtype)

    llm, clip = read_models()
    return HunyuanTextEncoder(llm, llm_tokenizer, clip, clip_tokenizer, reload=read_models)


def _origin(tokenizer) -> str:
    return getattr(tokenizer, "name_or_path", "") or "the given tokenizer"
