"""The MODEL argument's help of every command that applies a model names both kinds of file it
opens: the model file of 'train' and the BioImage Model Zoo package of 'export'."""

from __future__ import annotations

import pytest

from napari_imc_vae.cli import main


@pytest.mark.parametrize("command", ["reconstruct", "quality", "motifs", "qc", "cells"])
def test_the_model_help_names_the_zoo_package_too(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "MODEL model file (.pt) written by 'train', or a BioImage Model Zoo package (.zip) written by " \
           "'export'" in help_text
