"""The ``vqgan-ddpm`` reference generator: a 3D VQGAN with a latent DDPM (entry point: :mod:`.plugin`)."""
