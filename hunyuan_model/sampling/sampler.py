"""Text-to-video and video-to-video sampling: inputs checked, noise seeded, the solver run through a handle.

Latents come in and go out as **raw VAE latents** (what ComfyUI's LATENT holds); the DiT works in
model space, ``raw * VAE_SCALING_FACTOR``. The conversion happens here and nowhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ..conditioning import TextEmbeds
from ..dit.config import DiTConfig
from ..dit.model import HunyuanVideoTransformer
from ..extras.extend import HeldFrames
from ..extras.options import applied, forward_shape
from ..handle import TransformerHandle
from ..image_condition import ImageCondition
from ..latent import VAE_SCALING_FACTOR
from .euler import StepCallback
from .hooks import model_hooks
from .image_to_video import ImageConditionedVelocity, check_image_condition, image_to_video_start
from .noise import add_noise, seeded_noise
from .schedule import check_schedule_settings, check_sigmas, flow_sigmas, timesteps
from .solvers import check_solver, solve
from .velocity import GuidedVelocity


@dataclass(frozen=True, eq=False)  # a tensor field has no single truth value to compare by
class SamplerSettings:
    """How to sample. ``sigmas`` (custom noise levels, steps + 1 values from at most 1 down towards 0)
    replace the schedule made from ``steps``, ``shift`` and ``denoise``. ``guidance`` is the embedded
    guidance scale of distilled models (ignored by models without a guidance embedding). ``solver`` follows
    the flow: ``euler`` (Tencent's), ``dpmpp_2m`` or ``unipc`` (second-order multistep, one model call per step
    too; see :mod:`.multistep`)."""

    steps: int = 30
    shift: float = 7.0
    guidance: float = 6.0
    denoise: float = 1.0
    sigmas: torch.Tensor | None = None
    solver: str = "euler"

    def __post_init__(self) -> None:
        check_schedule_settings(self.steps, self.shift, self.denoise)
        check_solver(self.solver)
        if not self.guidance >= 0:
            raise ValueError(f"embedded guidance must be 0 or more (6.0 is the default), got {self.guidance}.")
        if self.sigmas is not None:
            object.__setattr__(self, "sigmas", check_sigmas(self.sigmas))

    def schedule(self) -> torch.Tensor:
        """The float32 sigmas the loop steps through (one step between neighbours)."""
        return self.sigmas if self.sigmas is not None else flow_sigmas(self.steps, self.shift, self.denoise)


def check_inputs(
    handle: TransformerHandle, embeds: TextEmbeds, latent: torch.Tensor, image: ImageCondition | None = None
) -> DiTConfig:
    """Refuse, before any work, inputs the model cannot use; returns the model's config."""
    config = _loaded_config(handle)
    if not isinstance(embeds, TextEmbeds):
        raise TypeError(f"embeds must be TextEmbeds (from HunyuanVideo Text Encode), got {type(embeds).__name__}.")
    prompts = [("prompt", embeds.positive)] + ([("negative prompt", embeds.negative)] if embeds.uses_cfg else [])
    for name, prompt in prompts:
        if prompt.text_dim != config.text_dim or prompt.pooled_dim != config.pooled_dim:
            raise ValueError(
                f"the {name} was encoded into {prompt.text_dim}-wide LLM states and a {prompt.pooled_dim}-wide "
                f"CLIP vector, but this model expects {config.text_dim} and {config.pooled_dim}. Encode it with "
                "HunyuanVideo's text encoders (LLaVA-Llama-3-8B + CLIP-L) for this model."
            )
    if not isinstance(latent, torch.Tensor) or latent.ndim != 5 or latent.shape[1] != config.out_channels:
        found = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise ValueError(
            f"the latent must be a video latent [batch, {config.out_channels}, frames, height, width], got {found}. "
            "Use HunyuanVideo Empty Latent (or EmptyHunyuanLatentVideo), or a video encoded with HunyuanVideo's VAE; "
            "image latents of other models (4 or 16 channels without a frame axis) do not fit."
        )
    _, _, t, h, w = latent.shape
    if any(size % p for size, p in zip((t, h, w), config.patch_size)):
        raise ValueError(
            f"the latent's (frames, height, width) {(t, h, w)} must divide by the DiT's patch {config.patch_size}: "
            "make the video's width and height multiples of 16 pixels."
        )
    if not torch.isfinite(latent).all():
        raise ValueError("the latent contains NaN or infinity; re-encode the input video.")
    for name, prompt in prompts:
        if prompt.text_states.shape[0] not in (1, latent.shape[0]):
            raise ValueError(
                f"the {name} embeds hold {prompt.text_states.shape[0]} prompts but the latent holds "
                f"{latent.shape[0]} videos: use one prompt for all, or exactly one per video."
            )
    check_image_condition(config, image, latent)
    return config


def _loaded_config(handle: TransformerHandle) -> DiTConfig:
    if not isinstance(handle, TransformerHandle):
        raise TypeError(
            f"model must be a loaded HunyuanVideo DiT (from HunyuanVideo Model Loader), got {type(handle).__name__}."
        )
    tensors = [*handle.model.parameters(), *handle.model.buffers()]
    empty = sum(t.is_meta for t in tensors)
    if empty:
        raise ValueError(
            f"the model {handle.description or ''} did not finish loading: {empty} of {len(tensors)} weights hold "
            "no data. Run the model loader again and check its error."
        )
    return handle.model.config


@contextlib.contextmanager
def _checking_between_modules(model: HunyuanVideoTransformer, check: Callable[[], None] | None) -> Iterator[None]:
    if check is None:
        yield
        return
    runner = model.runner

    def checked(name: str, module: torch.nn.Module, *args):
        check()
        return runner(name, module, *args)

    with model.using_runner(checked):
        yield


def sample(
    handle: TransformerHandle,
    embeds: TextEmbeds,
    latent: torch.Tensor,
    seed: int,
    settings: SamplerSettings | None = None,
    *,
    batch_index: Sequence[int] | None = None,
    batch_cfg: bool = True,
    offload_after: bool = False,
    on_step: StepCallback | None = None,
    image: ImageCondition | None = None,
    hold_frames: int = 0,
    between_modules: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Denoise raw VAE latents ``latent`` [B, 16, T, H, W]; returns raw VAE latents, float32 on the CPU.

    The run starts at ``sigma_0 * noise + (1 - sigma_0) * latent`` in model space: pure noise for
    text-to-video (denoise 1.0, the latent only gives the shape), part of the latent otherwise. Noise
    follows the seed rule in :mod:`.noise` (``batch_index`` as in ComfyUI's LATENT). The model is used
    only inside ``handle.running``, which restores its placement even when ``on_step`` raises (cancel);
    ``offload_after`` moves it off the compute device at the end. ``batch_cfg`` runs true CFG's two
    prompts in one forward. The handle's ``options`` (RIFLEx, context windows, ...) apply, see
    :mod:`hunyuan_model.extras`. ``hold_frames`` keeps the first frames of ``latent`` on their noising
    path, so they end as they came in (extending a video: :mod:`hunyuan_model.extras.extend`).
    ``image``: the first frame for image-to-video DiTs (required by them, refused by text-to-video ones;
    see :mod:`.image_to_video`). ``between_modules()`` runs before each top-level module of every forward
    (through the model's runner, around whatever runner the placement installed) and may raise to
    cancel: one step of a large video can take minutes. The handle's ``step_cache`` and ``compile``
    wrap the model for this run only (:mod:`.hooks`).
    """
    settings = settings or SamplerSettings()
    config = check_inputs(handle, embeds, latent, image)
    sigmas = settings.schedule()
    noise = seeded_noise(latent.shape, seed, batch_index)
    with (
        handle.running(forward_shape(handle.options, latent.shape), offload_after=offload_after) as model,
        _checking_between_modules(model, between_modules),
    ):
        device = handle.compute_device
        clean = latent.to(device, torch.float32) * VAE_SCALING_FACTOR
        noise = noise.to(device)
        x = add_noise(clean, noise, sigmas[0])
        velocity = GuidedVelocity(model, embeds, latent.shape[0], device, settings.guidance, batch_cfg)
        if image is not None:
            x, image_latent = image_to_video_start(config, image, x, noise, float(sigmas[0]))
        with applied(handle.options, model, velocity, timesteps(sigmas)) as velocity:
            if hold_frames:
                velocity = HeldFrames(velocity, clean[:, :, :hold_frames], noise[:, :, :hold_frames])
            if image is not None:
                velocity = ImageConditionedVelocity(velocity, config, image_latent, latent.shape[2])
            del clean, noise
            with model_hooks(handle, model, len(sigmas) - 1, tuple(latent.shape)) as hooked:
                x = solve(settings.solver, hooked(velocity), x, sigmas, on_step)
    return (x / VAE_SCALING_FACTOR).cpu()
