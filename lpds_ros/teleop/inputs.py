"""Input sources for teleoperation, all behind one small interface (no X server anywhere).

A *key source* has ``read_keys(step) -> list[str]``: the keys pressed since the last call (``step`` is the
number of control steps the node has taken; only scripted sources use it).  A *device* has
``read() -> state`` with pyspacemouse's fields (``x, y, z`` in [-1, 1], ``buttons``) and ``close()``.

- ``TerminalKeys``: the real keyboard, from a terminal in raw (cbreak) mode; restores the terminal on close.
- ``ScriptedKeys``: keys due at given control steps (tests, demos): deterministic under lockstep sim time.
- ``open_spacemouse``: a 3Dconnexion SpaceMouse through pyspacemouse, or None (with the reason) when
  the library or the device is missing; the keyboard always works.
"""
from __future__ import annotations

import os
import select
import sys
import threading
from typing import Any, Iterable, Protocol

from lpds_ros.errors import LpdsError


class KeySource(Protocol):
    def read_keys(self, step: int) -> list[str]: ...

    def close(self) -> None: ...


class Device(Protocol):
    def read(self) -> Any: ...

    def close(self) -> None: ...


class ScriptedKeys:
    """Keys released at control steps: ``[(step, "keys"), ...]``; each character is one press, in order.

    A key due at step k is returned by the first ``read_keys(step)`` with ``step >= k``.  ``done`` is true
    once every key was read.
    """

    def __init__(self, script: Iterable[tuple[int, str]]):
        self._script = sorted(((int(step), str(keys)) for step, keys in script), key=lambda item: item[0])
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str) -> "ScriptedKeys":
        """``"0:b 10:rrr 40:y"`` (step:keys pairs; ``_`` stands for the space bar)."""
        script = []
        for token in text.split():
            step, _, keys = token.partition(":")
            if not step.isdigit() or not keys:
                raise LpdsError(f"key script token {token!r}: expected STEP:KEYS, e.g. 0:b 12:rr 40:y")
            script.append((int(step), keys.replace("_", " ")))
        return cls(script)

    @property
    def done(self) -> bool:
        with self._lock:
            return not self._script

    def read_keys(self, step: int) -> list[str]:
        with self._lock:
            due = [keys for k, keys in self._script if k <= step]
            self._script = [(k, keys) for k, keys in self._script if k > step]
        return [key for keys in due for key in keys]

    def close(self) -> None:
        pass


class TerminalKeys:
    """Key presses from a terminal (stdin) in cbreak mode: no Enter needed, no echo, Ctrl-C still works.

    Raises ``LpdsError`` when stdin is not a terminal (use a key script there).
    """

    def __init__(self, stream=None):
        import termios
        import tty

        self._stream = stream or sys.stdin
        if not self._stream.isatty():
            raise LpdsError("the keyboard needs an interactive terminal (stdin is not a tty); "
                            "run `lpds teleop` in a terminal, or give --keys 'STEP:KEYS ...' for a scripted run")
        self._fd = self._stream.fileno()
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        self._termios = termios

    def read_keys(self, step: int) -> list[str]:
        keys = []
        while select.select([self._fd], [], [], 0)[0]:
            data = os.read(self._fd, 64)
            if not data:
                break
            keys.extend(data.decode(errors="ignore"))
        return keys

    def close(self) -> None:
        if self._saved is not None:
            self._termios.tcsetattr(self._fd, self._termios.TCSADRAIN, self._saved)
            self._saved = None


class SpaceMouse:
    """A pyspacemouse device as a ``Device``."""

    def __init__(self, handle: Any, module: Any):
        self._handle, self._module = handle, module

    def read(self) -> Any:
        reader = getattr(self._handle, "read", None)
        return reader() if callable(reader) else self._module.read()

    def close(self) -> None:
        closer = getattr(self._handle, "close", None)
        try:
            closer() if callable(closer) else self._module.close()
        except Exception:  # a device unplugged meanwhile
            pass


def open_spacemouse() -> tuple[SpaceMouse | None, str]:
    """(the device, "") when a SpaceMouse is present, else (None, why not) -- never raises."""
    try:
        import pyspacemouse
    except Exception as exc:  # ImportError, or hidapi's missing shared library (OSError)
        return None, f"no SpaceMouse: pyspacemouse is not usable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); pip install pyspacemouse (and libhidapi)"
    try:
        handle = pyspacemouse.open()
    except Exception as exc:
        return None, f"no SpaceMouse: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'open failed'}"
    if not handle:
        return None, "no SpaceMouse found (pyspacemouse.open() found no supported device)"
    return SpaceMouse(handle, pyspacemouse), ""
