"""Readers for IMC files: every format becomes one :class:`ImcImage`."""

from napari_imc_vae.io.image import ImcImage, ImcReadError

__all__ = ["ImcImage", "ImcReadError"]
