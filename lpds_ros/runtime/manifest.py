"""The manifest of an exported policy folder: what the ONNX graphs compute and how to check them.

An export folder (``lpds export --out models/<name>/``) holds::

    manifest.json     this file's ``Manifest``: shapes, K, H, H_exec, d, normalisation, names, SHA-256s
    decoder.onnx      (obs [B, obs_dim], z [B, H, d]) -> action [B, H, d]: the whole K-step loop
    steering.onnx     obs [B, obs_dim] -> delta [B, H, d]         (only when exported with --steering)

Loading never trusts a number it can check: the runtime hashes every file, compares the graphs' input
and output shapes and their embedded metadata (K, H, d, ...) with the manifest, and raises one
``LpdsError`` line on the first difference.  K and H are read from here, never assumed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpds_ros.errors import LpdsError
from lpds_ros.utils import read_json_file

MANIFEST_FILE = "manifest.json"
FORMAT = "lpds_ros.onnx_policy"
FORMAT_VERSION = 1

DECODER_FILE = "decoder.onnx"
STEERING_FILE = "steering.onnx"

# Graph input/output names (documented in docs/runtime.md).
OBS = "obs"
"""Raw observation, float32 [batch, obs_dim] (normalised inside the graphs)."""
LATENT = "z"
"""Decoder latent w, float32 [batch, H, d] (w = eps in base mode, eps + delta in steered mode)."""
ACTION = "action"
"""Raw env action chunk, float32 [batch, H, d], clipped to [-1, 1]."""
DELTA = "delta"
"""Steering shift Delta(s), float32 [batch, H, d]."""
NOISE = "eps"
"""Prior noise eps ~ N(0, I), float32 [batch, H, d]: the input of the fused steered graph the runtime builds."""
BATCH = "batch"
"""The symbolic (dynamic) batch axis."""

# Keys of the ONNX model metadata (metadata_props) the exporter writes and the runtime checks.
META_KEYS = ("backbone", "obs_dim", "action_dim", "horizon", "exec_horizon", "num_inference_steps")
META_PREFIX = "lpds_ros."

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class GraphEntry:
    """One ONNX file of the folder: its name, SHA-256 and input/output shapes (``"batch"`` = dynamic)."""

    file: str
    sha256: str
    inputs: dict[str, list[int | str]]
    outputs: dict[str, list[int | str]]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "inputs": self.inputs, "outputs": self.outputs}


@dataclass
class Manifest:
    """Everything the runtime needs to know about an export folder, and nothing it must guess."""

    backbone: str
    """``diffusion`` (DDIM, eta = 0) or ``flow`` (Euler)."""
    obs_dim: int
    action_dim: int
    """d."""
    horizon: int
    """H: steps per chunk."""
    exec_horizon: int
    """H_exec: steps executed per decision."""
    num_inference_steps: int
    """K: DDIM / Euler steps unrolled in decoder.onnx."""
    opset: int
    """ONNX opset of the graphs (default domain)."""
    decoder: GraphEntry
    steering: GraphEntry | None
    decoder_checkpoint_sha256: str | None
    """SHA-256 of the policy's model.safetensors the decoder was exported from."""
    steering_checkpoint: dict[str, Any] | None = None
    """``{"sha256", "decoder_checkpoint_sha256", "method"}`` of the steering checkpoint, when there is one."""
    task: str | None = None
    obs_keys: list[str] | None = None
    """Observation keys in the order they are concatenated into obs (from the policy's training record)."""
    normalization: dict[str, Any] = field(default_factory=dict)
    """The normalisation baked into the graphs (informational; the graphs apply it themselves)."""
    policy_config: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    """How the folder was made: versions, exporter, graph rewrites, measured parity, source paths."""

    @property
    def latent_shape(self) -> tuple[int, int]:
        return (self.horizon, self.action_dim)

    def graph_metadata(self) -> dict[str, str]:
        """The key/values embedded in each ONNX file's metadata, checked against the manifest on load."""
        return {META_PREFIX + k: str(getattr(self, k)) for k in META_KEYS}

    def to_dict(self) -> dict[str, Any]:
        graphs = {"decoder": self.decoder.to_dict()}
        if self.steering is not None:
            graphs["steering"] = self.steering.to_dict()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backbone": self.backbone,
            "task": self.task,
            "obs_keys": self.obs_keys,
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "horizon": self.horizon,
            "exec_horizon": self.exec_horizon,
            "num_inference_steps": self.num_inference_steps,
            "opset": self.opset,
            "graphs": graphs,
            "decoder_checkpoint_sha256": self.decoder_checkpoint_sha256,
            "steering_checkpoint": self.steering_checkpoint,
            "normalization": self.normalization,
            "policy_config": self.policy_config,
            "export": self.export,
        }


def decoder_io(obs_dim: int, horizon: int, action_dim: int) -> tuple[dict, dict]:
    """The decoder graph's (inputs, outputs) shapes."""
    chunk = [BATCH, horizon, action_dim]
    return {OBS: [BATCH, obs_dim], LATENT: list(chunk)}, {ACTION: list(chunk)}


def steering_io(obs_dim: int, horizon: int, action_dim: int) -> tuple[dict, dict]:
    """The steering graph's (inputs, outputs) shapes."""
    return {OBS: [BATCH, obs_dim]}, {DELTA: [BATCH, horizon, action_dim]}


def load_manifest(directory: str | Path) -> Manifest:
    """Read and validate ``<directory>/manifest.json``; raises ``LpdsError`` (one line) on any problem.

    Checks the format, the types of every field, and that the recorded graph shapes agree with
    obs_dim, H and d.  The ONNX files themselves are checked by ``lpds_ros.runtime.session``.
    """
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise LpdsError(f"{directory}: export folder not found (make one with `lpds export`)")
    if not path.is_file():
        raise LpdsError(f"{path}: missing; an export folder holds {MANIFEST_FILE} + {DECODER_FILE} (run `lpds export`)")
    doc = read_json_file(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise LpdsError(f"{path}: not an lpds_ros export manifest (expected \"format\": \"{FORMAT}\")")
    if doc.get("format_version") != FORMAT_VERSION:
        raise LpdsError(f"{path}: format_version {doc.get('format_version')!r} is not supported "
                        f"(this lpds_ros reads {FORMAT_VERSION}); re-export with `lpds export`")

    def need(key: str, kind: type | tuple[type, ...], where: dict = doc, prefix: str = "") -> Any:
        value = where.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise LpdsError(f"{path}: field {prefix}{key!r} is missing or not a {_kind_name(kind)} (got {value!r})")
        return value

    def positive(key: str) -> int:
        value = need(key, int)
        if value < 1:
            raise LpdsError(f"{path}: field {key!r} must be a positive integer (got {value})")
        return value

    dims = {k: positive(k) for k in ("obs_dim", "action_dim", "horizon", "exec_horizon", "num_inference_steps", "opset")}
    if dims["exec_horizon"] > dims["horizon"]:
        raise LpdsError(f"{path}: exec_horizon {dims['exec_horizon']} > horizon {dims['horizon']}")
    backbone = need("backbone", str)
    graphs = need("graphs", dict)
    if "decoder" not in graphs:
        raise LpdsError(f"{path}: graphs has no 'decoder' entry")
    unknown = sorted(set(graphs) - {"decoder", "steering"})
    if unknown:
        raise LpdsError(f"{path}: unknown graph(s) {unknown}; expected 'decoder' and optionally 'steering'")
    obs_dim, horizon, action_dim = dims["obs_dim"], dims["horizon"], dims["action_dim"]
    decoder = _graph_entry(path, "decoder", graphs["decoder"], *decoder_io(obs_dim, horizon, action_dim))
    steering = None
    if graphs.get("steering") is not None:
        steering = _graph_entry(path, "steering", graphs["steering"], *steering_io(obs_dim, horizon, action_dim))
    obs_keys = doc.get("obs_keys")
    if obs_keys is not None and (not isinstance(obs_keys, list) or not all(isinstance(k, str) for k in obs_keys)):
        raise LpdsError(f"{path}: obs_keys must be a list of strings or null")
    steering_checkpoint = doc.get("steering_checkpoint")
    if steering_checkpoint is not None and not isinstance(steering_checkpoint, dict):
        raise LpdsError(f"{path}: steering_checkpoint must be a mapping or null")
    decoder_sha = doc.get("decoder_checkpoint_sha256")
    if steering_checkpoint and decoder_sha and steering_checkpoint.get("decoder_checkpoint_sha256") not in (None, decoder_sha):
        raise LpdsError(f"{path}: the steering checkpoint was trained against decoder "
                        f"{str(steering_checkpoint['decoder_checkpoint_sha256'])[:12]}..., not this decoder ({decoder_sha[:12]}...)")
    return Manifest(
        backbone=backbone, obs_dim=obs_dim, action_dim=action_dim, horizon=horizon,
        exec_horizon=dims["exec_horizon"], num_inference_steps=dims["num_inference_steps"], opset=dims["opset"],
        decoder=decoder, steering=steering, decoder_checkpoint_sha256=decoder_sha,
        steering_checkpoint=steering_checkpoint, task=doc.get("task"), obs_keys=obs_keys,
        normalization=doc.get("normalization") or {}, policy_config=doc.get("policy_config") or {},
        export=doc.get("export") or {},
    )


def _graph_entry(path: Path, name: str, entry: Any, inputs: dict, outputs: dict) -> GraphEntry:
    where = f"{path}: graphs.{name}"
    if not isinstance(entry, dict):
        raise LpdsError(f"{where} must be a mapping")
    file = entry.get("file")
    if not isinstance(file, str) or not file or Path(file).name != file or file in (".", ".."):
        raise LpdsError(f"{where}.file must be a plain file name inside the export folder (got {file!r})")
    sha = entry.get("sha256")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise LpdsError(f"{where}.sha256 must be 64 lowercase hex digits (got {sha!r})")
    for key, expected in (("inputs", inputs), ("outputs", outputs)):
        if entry.get(key) != expected:
            raise LpdsError(f"{where}.{key} is {entry.get(key)!r}, but obs_dim/horizon/action_dim say {expected!r}")
    return GraphEntry(file=file, sha256=sha, inputs=inputs, outputs=outputs)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({int: "integer", str: "string", dict: "mapping", list: "list"}.get(k, k.__name__) for k in kinds)
