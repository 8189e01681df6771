"""Places no file can be written to, for the output checks' tests."""

from __future__ import annotations

import os
from pathlib import Path


def read_only_place(tmp_path: Path) -> str:
    """A folder nobody can write in: a chmod 555 folder, or /sys for root (who ignores the bits)."""
    if os.geteuid() != 0:
        place = tmp_path / "locked"
        place.mkdir()
        place.chmod(0o555)
        return str(place)
    return "/sys"
