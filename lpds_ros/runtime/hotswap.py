"""A steering network that is replaced while the policy runs (``lpds finetune --via-ros``).  No torch here.

The learner sends the steering network as an ONNX graph (obs [B, obs_dim] raw -> delta [B, H, d], the same
graph as an export's steering.onnx) whose metadata names the decoder it was trained against
(``META_DECODER``: the SHA-256 of the decoder checkpoint) and its version (``META_VERSION``).
``SteeringSlot.load`` checks the graph against the running decoder -- the SHA-256 must be the decoder's
(DESIGN §6: steering trained on another decoder is an error), the inputs and outputs must be the steering
graph's shapes in float32, a trial run on a zero observation must give finite values -- builds its
onnxruntime session, and only then replaces the current one with a single reference assignment.  A
decision reads the slot once (``current``) and uses that (session, version) pair throughout, so each chunk
is decoded with one set of weights, and a swap never waits on or stalls a control step.
The decoder itself is never touched.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lpds_ros.errors import LpdsError

META_DECODER = "lpds_ros.decoder_checkpoint_sha256"
"""ONNX metadata key: SHA-256 of the decoder checkpoint the steering network was trained against."""
META_VERSION = "lpds_ros.steering_version"
"""ONNX metadata key: the learner's version number of these weights (increasing)."""
META_UPDATES = "lpds_ros.steering_updates"
"""ONNX metadata key: gradient updates the learner had made when it sent them (for the record)."""


class Steering(NamedTuple):
    session: object  # onnxruntime.InferenceSession
    version: int
    updates: int


class SteeringSlot:
    """The current steering graph of a running policy (or none: Delta = 0), swappable at any time."""

    def __init__(self, obs_dim: int, horizon: int, action_dim: int, decoder_sha256: str | None, threads: int = 1) -> None:
        self.obs_dim, self.horizon, self.action_dim = int(obs_dim), int(horizon), int(action_dim)
        self.decoder_sha256 = decoder_sha256
        self.threads = int(threads)
        self.current: Steering | None = None
        self.swaps = 0
        self.rejected = 0

    def load(self, data: bytes, trusted_version: int | None = None) -> Steering:
        """Check ``data`` (ONNX bytes), build its session and make it current; returns it.

        Raises ``LpdsError`` with one line when the graph is not for this decoder or is malformed; the current
        steering then stays.  ``trusted_version``: an export's own steering.onnx (its manifest already ties
        it to the decoder), which carries no ``META_DECODER``.
        """
        try:
            steering = self._check(data, trusted_version)
        except LpdsError:
            self.rejected += 1
            raise
        if self.current is not None and trusted_version is None and steering.version <= self.current.version:
            self.rejected += 1
            raise LpdsError(f"steering version {steering.version} is not newer than the running {self.current.version}")
        self.current = steering  # the swap: one reference assignment, read once per decision
        self.swaps += trusted_version is None
        return steering

    def _check(self, data: bytes, trusted_version: int | None) -> Steering:
        import onnx
        import onnxruntime as ort
        from google.protobuf.message import DecodeError

        from lpds_ros.runtime import graphs
        from lpds_ros.runtime.manifest import steering_io

        try:
            model = onnx.load_model_from_string(bytes(data))
            onnx.checker.check_model(model)
        except (DecodeError, onnx.checker.ValidationError, ValueError) as exc:
            raise LpdsError(f"steering weights are not a valid ONNX graph ({str(exc).splitlines()[0][:200]})") from None
        meta = graphs.metadata(model)
        if trusted_version is None:
            trained_on = meta.get(META_DECODER)
            if not self.decoder_sha256:
                raise LpdsError("the running policy records no decoder checkpoint SHA-256; it cannot take steering weights")
            if trained_on != self.decoder_sha256:
                raise LpdsError(f"steering weights trained against decoder {str(trained_on)[:12]}..., but this policy's "
                                f"decoder is {self.decoder_sha256[:12]}...; steering only applies to its own decoder")
            try:
                version, updates = int(meta[META_VERSION]), int(meta.get(META_UPDATES, 0))
            except (KeyError, ValueError):
                raise LpdsError(f"steering weights carry no integer {META_VERSION}") from None
        else:
            version, updates = int(trusted_version), 0
        inputs, outputs = graphs.io_shapes(model)
        want_in, want_out = steering_io(self.obs_dim, self.horizon, self.action_dim)
        if inputs != want_in or outputs != want_out:
            raise LpdsError(f"steering graph maps {inputs} -> {outputs}, this policy needs {want_in} -> {want_out}")
        if any(t != onnx.TensorProto.FLOAT for t in graphs.io_elem_types(model).values()):
            raise LpdsError("steering graph inputs/outputs must be float32")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types
            raise LpdsError(f"onnxruntime cannot load the steering graph ({str(exc).splitlines()[0][:200]})") from None
        trial = session.run(None, {next(iter(want_in)): np.zeros((1, self.obs_dim), np.float32)})[0]
        if trial.shape != (1, self.horizon, self.action_dim) or not np.isfinite(trial).all():
            raise LpdsError(f"steering graph gives {trial.shape} / non-finite values on a zero observation")
        return Steering(session, version, updates)

    def shift(self, obs: np.ndarray, steering: Steering | None = None) -> np.ndarray:
        """Delta(s) [H, d] of one observation under ``steering`` (default: the current one; none: zeros)."""
        steering = self.current if steering is None else steering
        if steering is None:
            return np.zeros((self.horizon, self.action_dim), np.float32)
        from lpds_ros.runtime.manifest import OBS

        out = steering.session.run(None, {OBS: np.asarray(obs, np.float32).reshape(1, self.obs_dim)})[0]
        return out[0]
