"""HunyuanVideo's causal 3D VAE: model, weight loading, tiled decode and encode, memory rule."""

from .codec import VAEOutOfMemoryError, check_frames, check_latent, decode, encode
from .config import VAEConfig
from .keys import canonical_state_dict
from .loading import EXTENSIONS, load_vae
from .memory import AUTO_LADDER, auto_tiling, decode_peak_bytes, encode_peak_bytes, estimate_bytes
from .model import CausalVideoVAE
from .tiling import Tiling

__all__ = [
    "AUTO_LADDER",
    "EXTENSIONS",
    "CausalVideoVAE",
    "Tiling",
    "VAEConfig",
    "VAEOutOfMemoryError",
    "auto_tiling",
    "canonical_state_dict",
    "check_frames",
    "check_latent",
    "decode",
    "decode_peak_bytes",
    "encode",
    "encode_peak_bytes",
    "estimate_bytes",
    "load_vae",
]
