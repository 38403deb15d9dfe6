"""Widget specs that several nodes share, so that their ranges and defaults cannot drift apart."""

MAX_SEED = 0xFFFFFFFFFFFFFFFF


def seed_input(tooltip: str) -> tuple:
    """A noise seed: any 64-bit value, with ComfyUI's control-after-generate menu."""
    return ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True, "tooltip": tooltip})


def cfg_scale_input(tooltip: str) -> tuple:
    """True classifier-free guidance scale: 1.0 is off."""
    return ("FLOAT", {"default": 1.0, "min": 1.0, "max": 30.0, "step": 0.1, "tooltip": tooltip})


def shift_input(tooltip: str) -> tuple:
    """The flow-matching schedule's shift (Tencent's 7.0)."""
    return ("FLOAT", {"default": 7.0, "min": 0.01, "max": 100.0, "step": 0.1, "tooltip": tooltip})


def embedded_guidance_input(tooltip: str) -> tuple:
    """The guidance scale embedded into the distilled model (Tencent's 6.0)."""
    return ("FLOAT", {"default": 6.0, "min": 0.0, "max": 100.0, "step": 0.1, "tooltip": tooltip})
