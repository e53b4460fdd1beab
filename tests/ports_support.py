"""A block of loopback ports free right now, so tests that run ``serve`` never collide with a running one."""

from __future__ import annotations

import random
import socket

from local.common.ports import BLOCK_SIZE


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_block_base(low: int = 21000, high: int = 32000) -> int:
    """A ``LOCAL_PORT_BASE`` whose whole block is free (below the ephemeral range, so nothing takes it by chance)."""
    for _ in range(200):
        base = random.randrange(low, high - BLOCK_SIZE, BLOCK_SIZE)
        if all(_free(base + offset) for offset in range(BLOCK_SIZE)):
            return base
    raise RuntimeError(f"no free block of {BLOCK_SIZE} ports between {low} and {high}")
