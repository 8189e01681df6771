"""Shared fixtures: the real IMC test data beside the project, and seeded generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
IMC_TESTDATA = PROJECT_ROOT.parent / "shared" / "data" / "imc-testdata"


@pytest.fixture(scope="session")
def imc_testdata() -> Path:
    """Folder of the Bodenmiller IMC test data (skips when it is not beside the project)."""
    if not IMC_TESTDATA.is_dir():
        pytest.skip(f"IMC test data not found at {IMC_TESTDATA}")
    return IMC_TESTDATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def one_torch_thread():
    """Run the test with one intra-op torch thread, restoring the previous count afterwards.

    Tiny models on a few shared cores: a second intra-op thread only adds contention.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``;
    torch is imported here, not at the top, so Qt- and io-only tests never load it.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
