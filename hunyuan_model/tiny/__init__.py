"""Tiny random models written in the real checkpoint formats, for tests, benches and the headless demo.

The writers mirror the readers of :mod:`..checkpoint` (and live apart from them: no production
loader imports this package). :mod:`.dit_files` writes DiTs in every format the model loader
reads, :mod:`.text_encoder_files` the text encoders in every layout (with their tokenizers),
:mod:`.vae_files` the VAE; :mod:`.formats` holds the container writers they share.
"""
