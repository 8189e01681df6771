"""What the tests of torchrun jobs share: a free port and the torchrun command line."""

from __future__ import annotations

import socket
import sys


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_cmd(script, *args, nproc: int = 2) -> list[str]:
    """``python -m torch.distributed.run`` of ``script`` with ``args``: ``nproc`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
            f"--master_port={free_port()}", str(script), *map(str, args)]
