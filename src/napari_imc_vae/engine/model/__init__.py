"""The network and its loss: the D4-invariant patch VAE, the dihedral group, the critic.

- :mod:`.vae`: :class:`~.vae.PatchVAE` and :class:`~.vae.ModelConfig`;
- :mod:`.d4`: the 8 rotations/flips of a square patch;
- :mod:`.critic`: MSE + cosine + gradient + free-bits KL + permutation consistency.

Importing this package loads nothing; the modules load torch.
"""
