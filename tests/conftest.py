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
