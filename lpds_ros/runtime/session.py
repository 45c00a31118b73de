"""``OnnxPolicy``: the exported decoder (+ steering) in onnxruntime, at control rate.

    policy = OnnxPolicy("models/franka-lift-diffusion-onnx")     # steered if the folder has steering.onnx
    rng = np.random.default_rng(0)
    chunk = policy.act(obs, rng)              # obs [obs_dim] -> chunk [H, d]; obs [B, obs_dim] -> [B, H, d]

Each ``act`` draws fresh prior noise eps ~ N(0, I) from ``rng`` and decodes w = eps (base mode) or
w = eps + Delta(s) (steered mode).  The steered path is one onnxruntime call: the decoder and steering
graphs are fused in memory into (obs, eps) -> action (``graphs.fuse_steered``).

Loading checks everything it can and raises one ``LpdsError`` line otherwise: the manifest's fields, the
SHA-256 of every file, that each file parses as ONNX, and that each graph's inputs, outputs and embedded
metadata (K, H, d, ...) match the manifest.  Nothing here imports torch, so a robot computer needs only
numpy, onnx and onnxruntime.

Latency: one intra-op thread by default (a batch-1 decode is too small to split), sequential execution,
all graph optimisations, and I/O bound once to pre-allocated numpy buffers per batch size, so a call
allocates nothing but the returned copy.  CUDA / TensorRT providers are used when this onnxruntime has
them, the CPU otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError

from lpds_ros.errors import LpdsError
from lpds_ros.runtime import graphs
from lpds_ros.runtime.manifest import (
    LATENT,
    MANIFEST_FILE,
    NOISE,
    OBS,
    GraphEntry,
    Manifest,
    load_manifest,
)

# Preferred execution providers, best first; the CPU is always the last resort.
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"
MODES = ("auto", "steered", "base")


def choose_providers(providers: str | Sequence[str] = "auto") -> list[str]:
    """``"auto"``: TensorRT / CUDA when this onnxruntime has them, then CPU; ``"cpu"``; or an explicit list."""
    available = ort.get_available_providers()
    if isinstance(providers, str):
        if providers == "cpu":
            return [CPU_PROVIDER]
        if providers == "auto":
            return [p for p in GPU_PROVIDERS if p in available] + [CPU_PROVIDER]
        providers = [providers]
    missing = [p for p in providers if p not in available]
    if missing:
        raise LpdsError(f"execution provider(s) {missing} not in this onnxruntime (available: {available})")
    return list(providers)


@dataclass
class _Binding:
    """Pre-allocated inputs/outputs of one session at one batch size, bound once."""

    inputs: dict[str, np.ndarray]
    output: np.ndarray
    io: Any  # ort.IOBinding


class OnnxPolicy:
    """An export folder loaded into onnxruntime.  Satisfies ``lpds_ros.policies.Decoder`` (``decode``).

    ``mode``: ``"steered"`` (w = eps + Delta(s); needs steering.onnx), ``"base"`` (w = eps) or ``"auto"``
    (steered when the folder has a steering graph).
    ``providers``: ``"auto"``, ``"cpu"`` or a list of onnxruntime provider names.
    ``intra_op_threads`` / ``inter_op_threads``: onnxruntime thread pools (1 / 1: one core per policy).

    Attributes: ``manifest``, ``obs_dim``, ``action_dim``, ``horizon``, ``exec_horizon``,
    ``num_inference_steps`` (all from the manifest), ``mode``, ``steered`` and ``providers`` (as used).
    """

    def __init__(self, directory: str | Path, *, mode: str = "auto", providers: str | Sequence[str] = "auto",
                 intra_op_threads: int = 1, inter_op_threads: int = 1) -> None:
        if mode not in MODES:
            raise LpdsError(f"mode {mode!r}: choose one of {list(MODES)}")
        if intra_op_threads < 0 or inter_op_threads < 0:
            raise LpdsError("thread counts must be >= 0 (0 lets onnxruntime choose)")
        self.directory = Path(directory)
        self.manifest: Manifest = load_manifest(self.directory)
        m = self.manifest
        self.obs_dim, self.action_dim = m.obs_dim, m.action_dim
        self.horizon, self.exec_horizon = m.horizon, m.exec_horizon
        self.num_inference_steps = m.num_inference_steps
        if mode == "steered" and m.steering is None:
            raise LpdsError(f"{self.directory}: mode 'steered' needs a steering graph; export with --steering")
        self.steered = m.steering is not None and mode != "base"
        self.mode = "steered" if self.steered else "base"

        self._options = ort.SessionOptions()
        self._options.intra_op_num_threads = intra_op_threads
        self._options.inter_op_num_threads = inter_op_threads
        self._options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._options.log_severity_level = 3
        self._providers = choose_providers(providers)

        self._decoder_model = self._read_graph(m.decoder, "decoder")
        self._steering_model = self._read_graph(m.steering, "steering") if m.steering is not None else None
        self._decoder = self._session(self._decoder_model.SerializeToString(), m.decoder.file)
        self.providers: list[str] = list(self._decoder.get_providers())
        self._steered = None
        self._steering = None
        if self.steered:
            fused = graphs.fuse_steered(self._decoder_model, self._steering_model)
            self._steered = self._session(fused.SerializeToString(), f"{m.decoder.file} + {m.steering.file}")
        self._sessions = {"decoder": self._decoder, "steered": self._steered}
        self._bindings: dict[tuple[str, int], _Binding] = {}
        self.act(np.zeros(self.obs_dim, np.float32), np.random.default_rng(0))  # warm-up: allocations, kernels

    # ------------------------------------------------------------------------------------ loading
    def _read_graph(self, entry: GraphEntry, role: str) -> onnx.ModelProto:
        path = self.directory / entry.file
        if not path.is_file():
            raise LpdsError(f"{path}: missing ({MANIFEST_FILE} lists it as the {role} graph)")
        data = path.read_bytes()
        digest = _sha256_bytes(data)
        if digest != entry.sha256:
            raise LpdsError(f"{path}: SHA-256 {digest[:12]}... does not match {MANIFEST_FILE} ({entry.sha256[:12]}...): "
                            "the file was edited or corrupted; re-export with `lpds export`")
        try:
            model = onnx.load_model_from_string(data)
            onnx.checker.check_model(model)
        except (DecodeError, onnx.checker.ValidationError, ValueError) as exc:
            raise LpdsError(f"{path}: not a valid ONNX model ({_first_line(exc)})") from None
        inputs, outputs = graphs.io_shapes(model)
        if inputs != entry.inputs or outputs != entry.outputs:
            raise LpdsError(f"{path}: graph inputs/outputs {inputs} -> {outputs} do not match {MANIFEST_FILE} "
                            f"({entry.inputs} -> {entry.outputs})")
        types = graphs.io_elem_types(model)
        if any(t != onnx.TensorProto.FLOAT for t in types.values()):
            raise LpdsError(f"{path}: graph inputs/outputs must be float32")
        meta = graphs.metadata(model)
        for key, value in self.manifest.graph_metadata().items():
            if meta.get(key) != value:
                raise LpdsError(f"{path}: graph says {key.split('.', 1)[1]} = {meta.get(key)!r}, "
                                f"{MANIFEST_FILE} says {value!r}; re-export with `lpds export`")
        return model

    def _session(self, model_bytes: bytes, name: str) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(model_bytes, self._options, providers=self._providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            if self._providers != [CPU_PROVIDER]:  # e.g. TensorRT libraries missing: fall back to the CPU
                try:
                    session = ort.InferenceSession(model_bytes, self._options, providers=[CPU_PROVIDER])
                    self._providers = [CPU_PROVIDER]
                    return session
                except Exception:
                    pass
            raise LpdsError(f"{self.directory}: onnxruntime cannot load {name} ({_first_line(exc)})") from None

    # ------------------------------------------------------------------------------------ running
    def _binding(self, which: str, batch: int) -> _Binding:
        key = (which, batch)
        binding = self._bindings.get(key)
        if binding is not None:
            return binding
        session = self._sessions[which]
        chunk = (batch, self.horizon, self.action_dim)
        shapes = {OBS: (batch, self.obs_dim), LATENT: chunk, NOISE: chunk}
        inputs = {i.name: np.zeros(shapes[i.name], np.float32) for i in session.get_inputs()}
        output = np.zeros(chunk, np.float32)
        io = session.io_binding()
        for name, array in inputs.items():
            io.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
        io.bind_ortvalue_output(session.get_outputs()[0].name, ort.OrtValue.ortvalue_from_numpy(output))
        binding = self._bindings[key] = _Binding(inputs, output, io)
        return binding

    def _run(self, which: str, obs: np.ndarray, latent: np.ndarray | None = None,
             rng: np.random.Generator | None = None) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        if obs.shape[-1:] != (self.obs_dim,) or obs.ndim not in (1, 2):
            raise ValueError(f"obs must have shape [{self.obs_dim}] or [B, {self.obs_dim}], got {list(obs.shape)}")
        batch = 1 if single else obs.shape[0]
        binding = self._binding(which, batch)
        binding.inputs[OBS].reshape(-1)[:] = obs.reshape(-1)
        if which != "steering":
            noise = binding.inputs[NOISE if which == "steered" else LATENT]
            if rng is not None:
                rng.standard_normal(dtype=np.float32, out=noise)
            else:
                latent = np.asarray(latent, dtype=np.float32)
                if latent.shape != (noise.shape[1:] if single else noise.shape):
                    raise ValueError(f"latent must have shape {list(noise.shape[1:] if single else noise.shape)}, got {list(latent.shape)}")
                noise.reshape(-1)[:] = latent.reshape(-1)
        self._sessions[which].run_with_iobinding(binding.io)
        out = binding.output.copy()
        return out[0] if single else out

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One decision: obs [obs_dim] -> chunk [H, d] (or [B, obs_dim] -> [B, H, d]), raw env actions in [-1, 1].

        Draws fresh eps ~ N(0, I) [H, d] per row from ``rng`` (a ``numpy.random.Generator``) and decodes
        w = eps + Delta(s) in steered mode, w = eps in base mode.
        """
        return self._run("steered" if self.steered else "decoder", obs, rng=rng)

    def policy_chunk(self, obs: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """The policy as a function of its noise: Phi(s, eps + Delta(s)) (steered) or Phi(s, eps) (base).

        eps = 0 gives the "mean" policy.  Shapes as in ``act``, eps [H, d] or [B, H, d].
        """
        return self._run("steered" if self.steered else "decoder", obs, latent=eps)

    def decode(self, obs: Any, z: Any) -> Any:
        """Phi(s, z) without steering.  numpy in, numpy out; torch tensors in, torch tensors out (CPU)."""
        if type(obs).__module__.startswith("torch"):
            import torch

            return torch.from_numpy(self._run("decoder", obs.detach().cpu().numpy(), latent=z.detach().cpu().numpy()))
        return self._run("decoder", obs, latent=z)

    def shift(self, obs: np.ndarray) -> np.ndarray:
        """Delta(s): obs [obs_dim] -> [H, d] (or batched), from steering.onnx alone."""
        if self._steering_model is None:
            raise LpdsError(f"{self.directory}: no steering graph (export with --steering)")
        if self._steering is None:
            self._steering = self._session(self._steering_model.SerializeToString(), self.manifest.steering.file)
            self._sessions["steering"] = self._steering
        return self._run("steering", obs)

    def __repr__(self) -> str:
        m = self.manifest
        return (f"OnnxPolicy({str(self.directory)!r}, {m.backbone}, mode={self.mode}, K={m.num_inference_steps}, "
                f"H={m.horizon}, d={m.action_dim}, providers={self.providers})")


def _sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__

