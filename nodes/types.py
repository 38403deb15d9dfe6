"""The pack's own socket types, declared once. Native types (LATENT, IMAGE, CONDITIONING, SIGMAS)
are used where the object really is one; these names never reuse a native name for another object."""

MODEL = "HYVIDEO_MODEL"  # a loaded DiT with its run settings, for the sampler and block swap
TEXT_ENCODER = "HYVIDEO_TEXT_ENCODER"  # LLaVA-Llama-3 + CLIP-L with their tokenizers
EMBEDS = "HYVIDEO_EMBEDS"  # hunyuan_model.conditioning.TextEmbeds
VAE = "HYVIDEO_VAE"  # the causal 3D VAE (not ComfyUI's VAE object)
BLOCK_SWAP = "HYVIDEO_BLOCK_SWAP"  # block-swap settings for the loader or the sampler
