"""A preallocated numpy replay buffer of chunk transitions, saved and loaded as one .npz (atomically).

One row is one decision of one env: the observation, the executed slice of the chunk, the chunk reward
r = Σ_{i<k} γ^i r_i over the k steps actually executed, the next observation (the true final one when
the episode ended), ``done`` (termination only: a time-limit truncation still bootstraps) and
``discount`` = γ^k.  A method adds its own fields (the latent w, the prior pair (ε, Φ(s, ε)), the base
action of the residual baseline) through ``extra_fields``.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from lpds_ros.errors import LpdsError
from lpds_ros.utils import atomic_write_bytes


def transition_fields(obs_dim: int, exec_horizon: int, action_dim: int,
                      extra_fields: dict[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    """The per-row shape of every field: the common ones, then the method's extras."""
    spec = {
        "obs": (obs_dim,),
        "action": (exec_horizon, action_dim),
        "reward": (),
        "next_obs": (obs_dim,),
        "done": (),
        "discount": (),
    }
    for name, shape in (extra_fields or {}).items():
        if name in spec:
            raise ValueError(f"extra field {name!r} clashes with a common field")
        spec[name] = tuple(shape)
    return spec


class ReplayBuffer:
    """Ring buffer of ``capacity`` rows; every field is a float32 array [capacity, *shape]."""

    def __init__(self, capacity: int, fields: dict[str, tuple[int, ...]]) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.fields = {name: tuple(shape) for name, shape in fields.items()}
        self.data = {name: np.zeros((self.capacity, *shape), dtype=np.float32) for name, shape in self.fields.items()}
        self.ptr = 0
        self.size = 0
        self.added = 0
        """Rows ever added (> size once old rows have been overwritten)."""

    def __len__(self) -> int:
        return self.size

    def add(self, rows: dict[str, np.ndarray]) -> None:
        """Append n rows: every field [n, *shape] (missing or extra fields are an error)."""
        if set(rows) != set(self.fields):
            raise ValueError(f"rows have fields {sorted(rows)}, the buffer has {sorted(self.fields)}")
        n = len(rows["obs"])
        idx = (self.ptr + np.arange(n)) % self.capacity
        for name, value in rows.items():
            value = np.asarray(value, dtype=np.float32)
            if value.shape != (n, *self.fields[name]):
                raise ValueError(f"field {name!r}: got shape {value.shape}, expected {(n, *self.fields[name])}")
            self.data[name][idx] = value
        self.ptr = int((self.ptr + n) % self.capacity)
        self.size = int(min(self.size + n, self.capacity))
        self.added += n

    def sample(self, batch_size: int, rng: np.random.Generator, n_step: int = 1,
               stride: int = 1) -> dict[str, torch.Tensor]:
        """A batch of rows drawn uniformly with replacement: {field: Tensor[batch_size, *shape]}; with
        ``n_step`` > 1 each row's TD fields span up to n decisions (``gather``)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty buffer")
        idx = rng.integers(0, self.size, size=batch_size)
        return {name: torch.from_numpy(array) for name, array in self.gather(idx, n_step, stride).items()}

    def gather(self, idx: np.ndarray, n_step: int = 1, stride: int = 1) -> dict[str, np.ndarray]:
        """Rows ``idx`` {field: [len(idx), *shape]}; with ``n_step`` > 1 their TD fields are summed along the same
        env's next n − 1 decisions: reward r_0 + γ^{k_0} r_1 + γ^{k_0+k_1} r_2 + ..., discount the product of the
        γ^{k_j}, and done / next_obs those of the last decision taken.

        Every decision adds one row per env in env order, so an env's next decision lies ``stride`` (the number
        of envs) rows later.  The sum stops early at a termination, at an episode's end (the next row does not
        start from this one's next_obs: a truncation and reset), and at the newest row.  The other fields (obs,
        the action, the method's extras) stay the first decision's.
        """
        rows = {name: array[idx] for name, array in self.data.items()}
        if n_step == 1:
            return rows
        live = rows["done"] == 0.0
        cur = np.asarray(idx)
        for _ in range(n_step - 1):
            nxt = (cur + stride) % self.capacity
            # nxt was written `stride` rows after cur (else it is an older row, or the ring's unwritten tail),
            # and it continues cur's episode
            live &= self._age(cur) >= stride
            live &= (self.data["obs"][nxt] == self.data["next_obs"][cur]).all(axis=1)
            take = np.flatnonzero(live)
            if take.size == 0:
                break
            nt = nxt[take]
            rows["reward"][take] += rows["discount"][take] * self.data["reward"][nt]
            rows["discount"][take] *= self.data["discount"][nt]
            rows["next_obs"][take] = self.data["next_obs"][nt]
            rows["done"][take] = self.data["done"][nt]
            live &= rows["done"] == 0.0
            cur = nxt
        return rows

    def _age(self, pos: np.ndarray) -> np.ndarray:
        """Rows added after the row at ``pos`` (0 for the newest)."""
        return (self.ptr - 1 - pos) % self.capacity

    # ------------------------------------------------------------------------------------ save / load
    def to_bytes(self) -> bytes:
        """The filled rows, the pointer and the capacity as an .npz file's bytes."""
        out = io.BytesIO()
        arrays = {f"data/{name}": array[: self.size] for name, array in self.data.items()}
        np.savez(out, ptr=np.int64(self.ptr), size=np.int64(self.size), capacity=np.int64(self.capacity),
                 added=np.int64(self.added), **arrays)
        return out.getvalue()

    def save(self, path: str | Path) -> None:
        atomic_write_bytes(path, self.to_bytes())

    def load(self, path: str | Path | io.BytesIO) -> None:
        """Restore rows and pointer from ``save``'s file.  The fields must match; the capacity too, unless
        no row was ever overwritten and the rows fit (a run resumed with a larger budget)."""
        try:
            with np.load(path) as npz:
                capacity, size, ptr = int(npz["capacity"]), int(npz["size"]), int(npz["ptr"])
                added = int(npz["added"])
                stored = {key.split("/", 1)[1] for key in npz.files if key.startswith("data/")}
                resizable = added == size and size <= self.capacity
                if (capacity != self.capacity and not resizable) or stored != set(self.fields):
                    raise LpdsError(f"{path}: replay buffer of capacity {capacity} with fields {sorted(stored)} does not "
                                    f"fit this run's (capacity {self.capacity}, fields {sorted(self.fields)})")
                for name in self.fields:
                    self.data[name][:size] = npz[f"data/{name}"]
                    self.data[name][size:] = 0.0
        except (OSError, ValueError, KeyError) as exc:
            raise LpdsError(f"{path}: not a readable replay buffer ({exc})") from None
        self.size, self.added = size, added
        self.ptr = ptr if capacity == self.capacity else size % self.capacity
