"""Demonstrations on disk, in robomimic's HDF5 layout.

    data/                       attrs: total, env_args (JSON: env_name, env_kwargs, env_meta), obs_keys (JSON)
    data/demo_<i>/              attrs: num_samples, success
    data/demo_<i>/obs/<key>     (T, size)  one dataset per observation key, in the env's obs_layout order
    data/demo_<i>/actions       (T, d)
    data/demo_<i>/rewards       (T,)
    data/demo_<i>/dones         (T,)

Writers build the file under a temporary name and rename it into place when closed, so an interrupted
run never leaves a file that looks complete.  ``load_demos`` validates everything it reads and turns
any problem (not HDF5, truncated, missing keys, inconsistent lengths) into one ``DatasetError`` line.

``DemoAppender`` (teleoperation) adds one finished episode at a time to a file that stays valid between
episodes: each append is made on a copy, synced, and renamed over the file, so a kill at any instant
leaves either the file before the episode or the file with it, never half an episode.
``recover_demo_file`` removes what a killed append left behind (the copy) and says so in one line.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lpds_ros.errors import LpdsError

FORMAT_VERSION = 1


class DatasetError(LpdsError):
    """A demo file is missing, unreadable or inconsistent."""


@dataclass
class Episode:
    """One demonstration; ``obs`` is the flat observation (keys concatenated in ``DemoSet.obs_keys`` order)."""

    obs: np.ndarray  # (T, obs_dim) float32
    actions: np.ndarray  # (T, d) float32
    rewards: np.ndarray  # (T,) float32
    dones: np.ndarray  # (T,) bool
    success: bool

    def __len__(self) -> int:
        return len(self.actions)


@dataclass
class DemoSet:
    episodes: list[Episode]
    obs_layout: dict[str, int]  # ordered key -> size
    env_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def obs_keys(self) -> list[str]:
        return list(self.obs_layout)

    @property
    def obs_dim(self) -> int:
        return sum(self.obs_layout.values())

    @property
    def action_dim(self) -> int:
        return self.episodes[0].actions.shape[1]

    @property
    def num_samples(self) -> int:
        return sum(len(e) for e in self.episodes)

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.success for e in self.episodes])) if self.episodes else 0.0


def _write_header(data: h5py.Group, obs_layout: dict[str, int], env_meta: dict[str, Any]) -> None:
    """The ``data`` group's attributes (robomimic's layout plus our observation layout)."""
    data.attrs["format_version"] = FORMAT_VERSION
    data.attrs["obs_keys"] = json.dumps(obs_layout)
    data.attrs["env_args"] = json.dumps(
        {"env_name": env_meta.get("task", ""), "type": "lpds_ros", "env_kwargs": env_meta.get("kwargs", {}), "env_meta": env_meta}
    )


def _checked_episode(obs, actions, obs_layout: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(obs, actions) as float32, refusing an empty episode or observations of the wrong width."""
    obs = np.asarray(obs, dtype=np.float32)
    actions = np.asarray(actions, dtype=np.float32)
    T, width = len(actions), sum(obs_layout.values())
    if T == 0:
        raise DatasetError("refusing to write an empty episode")
    if obs.shape != (T, width):
        raise DatasetError(f"episode obs has shape {obs.shape}, expected ({T}, {width})")
    return obs, actions


def _write_episode(data: h5py.Group, name: str, obs_layout: dict[str, int], obs: np.ndarray, actions: np.ndarray,
                   rewards, dones, success: bool) -> None:
    """One ``demo_<n>`` group: obs split per key, actions, rewards, dones and the success flag."""
    T = len(actions)
    demo = data.create_group(name)
    demo.attrs["num_samples"] = T
    demo.attrs["success"] = bool(success)
    start = 0
    for key, size in obs_layout.items():
        demo.create_dataset(f"obs/{key}", data=obs[:, start : start + size])
        start += size
    demo.create_dataset("actions", data=actions)
    demo.create_dataset("rewards", data=np.asarray(rewards, dtype=np.float32).reshape(T))
    demo.create_dataset("dones", data=np.asarray(dones, dtype=bool).reshape(T))


class DemoWriter:
    """Append episodes to a new HDF5 demo file; the file appears under its name only on ``close()``.

    Use as a context manager.  Leaving the block by an exception still publishes the episodes written so
    far (nothing recorded is lost), unless there were none.
    """

    def __init__(self, path: str | Path, obs_layout: dict[str, int], env_meta: dict[str, Any], overwrite: bool = False):
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise DatasetError(f"{self.path} already exists (pass --overwrite to replace it)")
        if self.path.suffix not in (".hdf5", ".h5"):
            raise DatasetError(f"{self.path}: demo files end in .hdf5 or .h5")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.obs_layout = dict(obs_layout)
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self._file = h5py.File(self._tmp, "w")
        self._data = self._file.create_group("data")
        _write_header(self._data, self.obs_layout, env_meta)
        self.count = 0

    def add_episode(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray, success: bool) -> None:
        obs, actions = _checked_episode(obs, actions, self.obs_layout)
        _write_episode(self._data, f"demo_{self.count}", self.obs_layout, obs, actions, rewards, dones, success)
        self.count += 1
        self._data.attrs["total"] = sum(int(self._data[f"demo_{i}"].attrs["num_samples"]) for i in range(self.count))
        self._file.flush()

    def close(self) -> None:
        if self._file is None:
            return
        self._data.attrs["num_demos"] = self.count
        self._file.close()
        self._file = None
        if self.count:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "DemoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.append")


def recover_demo_file(path: str | Path) -> str | None:
    """Clean up after a killed ``DemoAppender``: drop the half-made copy of ``path``.

    The file itself is only ever replaced whole (``os.replace``), so it holds every episode saved before
    the kill.  Returns a one-line message when something was removed, else None.
    """
    path = Path(path)
    partial = _partial_path(path)
    if not partial.exists():
        return None
    partial.unlink()
    if path.is_file():
        return f"{path}: removed an unfinished episode append left by an interrupted recording; saved episodes are intact"
    return f"{path}: removed an unfinished first episode left by an interrupted recording (no episode was saved)"


class DemoAppender:
    """Append finished episodes, one at a time, to a demo file that is complete after every append.

    ``append`` copies the file (when it exists), adds ``data/demo_<n>`` to the copy, flushes and fsyncs
    it, and renames it over the file: a SIGKILL at any point leaves the old file or the new one, and at
    worst a stale copy that ``recover_demo_file`` (called here on open) removes.  The cost is one file
    copy per episode, negligible at teleoperation rates for low-dimensional demos.

    Appending to an existing file (from ``lpds collect`` or an earlier session) continues its demo
    numbering; its observation layout must match.
    """

    def __init__(self, path: str | Path, obs_layout: dict[str, int], env_meta: dict[str, Any]):
        self.path = Path(path)
        if self.path.suffix not in (".hdf5", ".h5"):
            raise DatasetError(f"{self.path}: demo files end in .hdf5 or .h5")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.obs_layout = dict(obs_layout)
        self.env_meta = dict(env_meta)
        self.recovered = recover_demo_file(self.path)
        self.count = 0  # episodes appended by this object
        self.next_index = 0
        if self.path.exists():
            existing = load_demos(self.path)  # validates the file (one-line DatasetError)
            if existing.obs_layout != self.obs_layout:
                raise DatasetError(f"{self.path}: its observation layout {existing.obs_layout} differs from this task's "
                                   f"{self.obs_layout}; record into a new file")
            with h5py.File(self.path, "r") as f:
                self.next_index = 1 + max(_demo_index(n) for n in f["data"].keys())

    @property
    def total_demos(self) -> int:
        if not self.path.exists():
            return 0
        with h5py.File(self.path, "r") as f:
            return sum(1 for n in f["data"].keys() if _demo_index(n) >= 0)

    def append(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray, success: bool) -> str:
        """Add one episode; returns its group name (``demo_<n>``).  The file is complete when this returns."""
        obs, actions = _checked_episode(obs, actions, self.obs_layout)
        if actions.ndim != 2:
            raise DatasetError(f"episode actions have shape {actions.shape}, expected ({len(actions)}, d)")
        partial = _partial_path(self.path)
        if self.path.exists():
            shutil.copyfile(self.path, partial)
        name = f"demo_{self.next_index}"
        with h5py.File(partial, "a" if self.path.exists() else "w") as f:
            data = f.require_group("data")
            if "obs_keys" not in data.attrs:
                _write_header(data, self.obs_layout, self.env_meta)
            _write_episode(data, name, self.obs_layout, obs, actions, rewards, dones, success)
            names = [n for n in data.keys() if _demo_index(n) >= 0]
            data.attrs["total"] = sum(int(data[n].attrs["num_samples"]) for n in names)
            data.attrs["num_demos"] = len(names)
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, self.path)  # the commit point
        _fsync_dir(self.path.parent)
        self.next_index += 1
        self.count += 1
        return name


def _demo_index(name: str) -> int:
    return int(name.split("_", 1)[1]) if name.startswith("demo_") and name[5:].isdigit() else -1


def load_demos(path: str | Path, max_demos: int | None = None, successful_only: bool = False) -> DemoSet:
    """Read and validate a demo file; ``max_demos`` keeps the first N demos (in index order)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: demo file not found")
    try:
        with h5py.File(path, "r") as f:
            return _read(f, path, max_demos, successful_only)
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise DatasetError(f"{path}: not a readable lpds/robomimic HDF5 demo file ({reason})") from None


def _read(f: h5py.File, path: Path, max_demos: int | None, successful_only: bool) -> DemoSet:
    if "data" not in f:
        raise DatasetError(f"{path}: no 'data' group (not a robomimic-layout demo file)")
    data = f["data"]
    names = sorted((n for n in data.keys() if _demo_index(n) >= 0), key=_demo_index)
    if not names:
        raise DatasetError(f"{path}: contains no demo_<i> groups")
    if "obs_keys" in data.attrs:
        layout = {str(k): int(v) for k, v in json.loads(data.attrs["obs_keys"]).items()}
    else:  # a plain robomimic file: take the first demo's keys in sorted order
        first = data[names[0]]["obs"]
        layout = {k: int(np.prod(first[k].shape[1:])) for k in sorted(first.keys())}
    env_args = json.loads(data.attrs.get("env_args", "{}"))
    env_meta = env_args.get("env_meta", env_args)

    episodes: list[Episode] = []
    for name in names:
        demo = data[name]
        for key in ("obs", "actions"):
            if key not in demo:
                raise DatasetError(f"{path}: {name} has no '{key}'")
        actions = np.asarray(demo["actions"][()], dtype=np.float32)
        T = len(actions)
        if actions.ndim != 2 or T == 0:
            raise DatasetError(f"{path}: {name}/actions has shape {actions.shape}, expected (T>0, d)")
        parts = []
        for key, size in layout.items():
            if key not in demo["obs"]:
                raise DatasetError(f"{path}: {name}/obs has no key '{key}'")
            arr = np.asarray(demo["obs"][key][()], dtype=np.float32).reshape(len(demo["obs"][key]), -1)
            if arr.shape != (T, size):
                raise DatasetError(f"{path}: {name}/obs/{key} has shape {arr.shape}, expected ({T}, {size})")
            parts.append(arr)
        rewards = np.asarray(demo["rewards"][()], dtype=np.float32) if "rewards" in demo else np.zeros(T, np.float32)
        dones = np.asarray(demo["dones"][()], dtype=bool) if "dones" in demo else np.zeros(T, bool)
        if rewards.shape != (T,) or dones.shape != (T,):
            raise DatasetError(f"{path}: {name} rewards/dones length differs from its {T} actions")
        obs = np.concatenate(parts, axis=1)
        if not (np.isfinite(obs).all() and np.isfinite(actions).all()):
            raise DatasetError(f"{path}: {name} contains NaN or inf")
        success = bool(demo.attrs.get("success", bool(rewards.max() > 0)))
        if successful_only and not success:
            continue
        episodes.append(Episode(obs, actions, rewards, dones, success))
        if max_demos is not None and len(episodes) >= max_demos:
            break
    if not episodes:
        raise DatasetError(f"{path}: no episodes left after filtering (successful_only={successful_only})")
    dims = {e.actions.shape[1] for e in episodes}
    if len(dims) != 1:
        raise DatasetError(f"{path}: demos disagree on the action size: {sorted(dims)}")
    return DemoSet(episodes=episodes, obs_layout=layout, env_meta=env_meta)
