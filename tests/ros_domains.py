"""ROS domain ids for the node tests: a block of ``width`` ids per test process, held by
a file lock for the life of the process, so concurrent runs (and the other test files of this run) never
discover each other's nodes.  Every block avoids 87 (test_franka_msgs).
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

_LOCKS: list = []


def claim_domains(width: int = 10) -> int:
    blocks = [b for b in range(8, 232 - width, width) if not b <= 87 < b + width]
    start = (os.getpid() * 7 + 3) % len(blocks)
    for block in blocks[start:] + blocks[:start]:
        handle = open(Path(tempfile.gettempdir()) / f"lpds_ros_test_domains_{block}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _LOCKS.append(handle)
        return block
    raise RuntimeError("no free block of ROS domain ids for this test run")
