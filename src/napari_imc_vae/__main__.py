"""``python -m napari_imc_vae`` runs the command line (also under ``torchrun``)."""

from napari_imc_vae._entry import main

if __name__ == "__main__":
    raise SystemExit(main())
