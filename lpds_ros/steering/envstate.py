"""Snapshots of live envs for exact resume: pickle, with MuJoCo's model by reference and its data as state.

A plain pickle of a MuJoCo env is tens of MB (the compiled model, with meshes, travels inside every
``MjData``).  Here ``MjModel`` objects are written as references, and each ``MjData`` as its integration
state (``mj_getState(mjSTATE_INTEGRATION)``: time, qpos, qvel, act, warm start, controls, mocap, ...),
the exact set MuJoCo needs to compute the next step.  Restoring takes the models from freshly built envs
of the same task (found in the same traversal order) and rebuilds each ``MjData`` with ``mj_setState``
and ``mj_forward``.  A snapshot is a few KB per env, and stepping the restored env gives bit-identical
observations (checked on franka-lift).  Envs without MuJoCo pickle as usual.
"""
from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

try:
    import mujoco
except ImportError:  # pragma: no cover - mujoco is a dependency, but keep the module importable
    mujoco = None


def _state_spec():
    return mujoco.mjtState.mjSTATE_INTEGRATION


def find_models(obj: Any) -> list[Any]:
    """The distinct ``MjModel`` objects reachable from ``obj``, in pickle traversal order."""
    found: dict[int, Any] = {}

    class _Finder(pickle.Pickler):
        def persistent_id(self, o):
            if mujoco is not None and isinstance(o, mujoco.MjModel):
                found.setdefault(id(o), o)
                return ("mjmodel", id(o))
            if mujoco is not None and isinstance(o, mujoco.MjData):
                found.setdefault(id(o.model), o.model)
                return ("mjdata", id(o))
            return None

    _Finder(io.BytesIO()).dump(obj)
    return list(found.values())


def dumps(obj: Any) -> bytes:
    class _Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if mujoco is None:
                return None
            if isinstance(o, mujoco.MjModel):
                return ("mjmodel", id(o))
            if isinstance(o, mujoco.MjData):
                state = np.empty(mujoco.mj_stateSize(o.model, _state_spec()))
                mujoco.mj_getState(o.model, o, state, _state_spec())
                return ("mjdata", id(o), id(o.model), state)
            return None

    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return out.getvalue()


def loads(blob: bytes, templates: list[Any]) -> Any:
    """Inverse of ``dumps``; ``templates``: ``find_models`` of freshly built envs of the same tasks."""
    models: dict[int, Any] = {}
    datas: dict[int, Any] = {}
    pool = list(templates)

    def model(key: int):
        if key not in models:
            if not pool:
                raise ValueError("env snapshot references more MuJoCo models than the fresh envs provide")
            models[key] = pool.pop(0)
        return models[key]

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid):
            if pid[0] == "mjmodel":
                return model(pid[1])
            _, key, model_key, state = pid
            if key not in datas:
                m = model(model_key)
                d = mujoco.MjData(m)
                mujoco.mj_setState(m, d, state, _state_spec())
                mujoco.mj_forward(m, d)
                datas[key] = d
            return datas[key]

    return _Unpickler(io.BytesIO(blob)).load()
