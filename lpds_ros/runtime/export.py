"""``lpds export``: a frozen decoder (and optionally its steering network) to ONNX plus a manifest.

    from lpds_ros.runtime.export import export_policy
    manifest = export_policy(policy, "models/franka-lift-diffusion-onnx", steering=agent)

decoder.onnx is the policy's whole K-step DDIM / Euler loop, unrolled, with the observation and action
normalisation inside: (obs [B, obs_dim] raw, z [B, H, d]) -> action [B, H, d].  steering.onnx is
obs [B, obs_dim] raw -> delta [B, H, d].  Both have a dynamic batch axis, opset ``OPSET`` and the names in
``lpds_ros.runtime.manifest``.  The export runs the graphs in onnxruntime against the torch modules on
random inputs and refuses to write a folder whose graphs disagree (the measured differences are kept in
the manifest).

The exporter is torch's TorchScript-based ``torch.onnx.export(..., dynamo=False)``: it needs no extra
package, takes a fraction of a second, and its opset-17 / IR-8 files load in onnxruntime >= 1.14, which
matters on robot computers with an older runtime.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from lpds_ros.errors import LpdsError
from lpds_ros.runtime import graphs
from lpds_ros.runtime.manifest import (
    BATCH,
    DECODER_FILE,
    LATENT,
    MANIFEST_FILE,
    NOISE,
    OBS,
    STEERING_FILE,
    GraphEntry,
    Manifest,
    decoder_io,
    steering_io,
)
from lpds_ros.runtime.specialize import DecoderGraph, SpecializationError, SteeringGraph
from lpds_ros.utils import atomic_write_bytes, atomic_write_text, sha256_file

OPSET = 17
"""Default-domain opset of the exported graphs (LayerNormalization is a native op from 17 on)."""
MIN_OPSET = 17
PARITY_TOLERANCE = 1e-3
"""Largest |onnxruntime - torch| the export accepts on its random check inputs (tests hold 1e-4)."""


class _AgentShift(nn.Module):
    """An agent with ``shift(obs) -> [B, H*d]`` (LP-DS) as a module obs -> shift."""

    def __init__(self, agent: nn.Module) -> None:
        super().__init__()
        self.agent = agent

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.agent.shift(obs)


def as_shift_module(steering: Any) -> nn.Module:
    """The steering network as a module obs [B, obs_dim] -> [B, H, d] or [B, H*d].

    Accepts an LP-DS agent (anything with a ``shift`` method, e.g. ``LPDSAgent``) or a plain module.
    """
    if isinstance(steering, nn.Module) and callable(getattr(steering, "shift", None)):
        return _AgentShift(steering)
    if isinstance(steering, nn.Module):
        return steering
    raise TypeError(f"steering must be an nn.Module (obs -> latent shift) or an agent with .shift, got {type(steering).__name__}")


def export_policy(
    policy: nn.Module,
    out_dir: str | Path,
    *,
    steering: Any = None,
    steering_checkpoint: dict[str, Any] | None = None,
    opset: int = OPSET,
    specialize: bool = True,
    overwrite: bool = False,
    source: dict[str, str] | None = None,
    seed: int = 0,
) -> Manifest:
    """Write decoder.onnx (+ steering.onnx) and manifest.json to ``out_dir``; returns the manifest.

    ``policy``: a frozen ``GenerativePolicy`` (``load_policy`` / ``make_policy``).
    ``steering``: the LP-DS steering network (an agent with ``shift`` or a module obs -> delta), or None.
    ``steering_checkpoint``: ``{"sha256", "decoder_checkpoint_sha256", "method"}`` of the file it came from;
    a steering network trained against another decoder is refused.
    ``specialize``: use the step-specialised decoder graph (``lpds_ros.runtime.specialize``); it falls back to
    the plain graph when the policy does not fit it, and the manifest says which was written.
    ``source``: paths recorded in the manifest (e.g. ``{"policy": "models/x"}``) so benchmarks can find the
    torch originals.
    """
    out_dir = Path(out_dir)
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise LpdsError(f"opset {opset!r}: must be an integer >= {MIN_OPSET} (LayerNormalization is native from 17)")
    if (out_dir / MANIFEST_FILE).exists() and not overwrite:
        raise LpdsError(f"{out_dir}: already holds an export ({MANIFEST_FILE}); pass --overwrite to replace it")
    policy = policy.eval()
    obs_dim, horizon, action_dim = int(policy.obs_dim), int(policy.horizon), int(policy.action_dim)
    decoder_sha = getattr(policy, "checkpoint_sha256", None)
    if steering_checkpoint is not None:
        trained_on = steering_checkpoint.get("decoder_checkpoint_sha256")
        if trained_on and decoder_sha and trained_on != decoder_sha:
            raise LpdsError(f"the steering checkpoint was trained against decoder {trained_on[:12]}..., "
                            f"but this policy is {decoder_sha[:12]}...; export it with the decoder it was trained on")
    if steering is None and steering_checkpoint is not None:
        raise ValueError("steering_checkpoint given without a steering network")

    generator = torch.Generator().manual_seed(seed)
    example_obs = torch.randn(1, obs_dim, generator=generator)
    example_z = torch.randn(1, horizon, action_dim, generator=generator)
    dec_in, dec_out = decoder_io(obs_dim, horizon, action_dim)

    steering_model = None
    shift_module = None
    if steering is not None:
        shift_module = as_shift_module(steering).eval()
        steering_module = SteeringGraph(shift_module, horizon, action_dim)
        steering_model = _to_onnx(steering_module, (example_obs,), steering_io(obs_dim, horizon, action_dim), opset)

    # The step-specialised graph first (faster), the plain one if the policy does not fit it.
    notes = []
    for specialized in ((True, False) if specialize else (False,)):
        try:
            module = DecoderGraph(policy, specialize=specialized)
            decoder_model = _to_onnx(module, (example_obs, example_z), (dec_in, dec_out), opset)
        except SpecializationError as exc:
            notes.append(f"not step-specialised: {exc}")
            continue
        parity = _check_parity(policy, shift_module, decoder_model, steering_model, seed)
        if parity.ok():
            notes.insert(0, "step-specialised" if specialized else "plain")
            break
        notes.append(f"{'step-specialised' if specialized else 'plain'} graph off by {parity.worst():.2e}")
    else:
        raise LpdsError(f"the exported graphs disagree with torch on random inputs ({'; '.join(notes)}; "
                        f"tolerance {PARITY_TOLERANCE:.0e})")

    manifest = Manifest(
        backbone=str(policy.config.backbone), obs_dim=obs_dim, action_dim=action_dim, horizon=horizon,
        exec_horizon=int(policy.exec_horizon), num_inference_steps=int(policy.num_inference_steps), opset=opset,
        decoder=GraphEntry(DECODER_FILE, "0" * 64, dec_in, dec_out), steering=None,
        decoder_checkpoint_sha256=decoder_sha,
        steering_checkpoint=dict(steering_checkpoint) if steering_checkpoint else None,
        task=(policy.metadata or {}).get("task") if hasattr(policy, "metadata") else None,
        obs_keys=_obs_keys(policy),
        normalization=_normalization(policy),
        policy_config=json.loads(json.dumps(dataclasses.asdict(policy.config))),
    )
    meta = manifest.graph_metadata()
    graphs.set_metadata(decoder_model, {**meta, "lpds_ros.graph": "decoder"})
    decoder_bytes = decoder_model.SerializeToString()
    steering_bytes = None
    if steering_model is not None:
        graphs.set_metadata(steering_model, {**meta, "lpds_ros.graph": "steering"})
        steering_bytes = steering_model.SerializeToString()

    manifest.export = {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "ir_version": decoder_model.ir_version,
        "decoder_graph": "; ".join(notes),
        "parity": parity.to_dict(),
        "source": dict(source or {}),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / DECODER_FILE, decoder_bytes)
    manifest.decoder = dataclasses.replace(manifest.decoder, sha256=sha256_file(out_dir / DECODER_FILE))
    if steering_bytes is not None:
        s_in, s_out = steering_io(obs_dim, horizon, action_dim)
        atomic_write_bytes(out_dir / STEERING_FILE, steering_bytes)
        manifest.steering = GraphEntry(STEERING_FILE, sha256_file(out_dir / STEERING_FILE), s_in, s_out)
    else:
        (out_dir / STEERING_FILE).unlink(missing_ok=True)  # a stale one from an earlier export
    atomic_write_text(out_dir / MANIFEST_FILE, _dump_json(manifest.to_dict()))
    return manifest


def _dump_json(document: dict[str, Any]) -> str:
    """Indented JSON with each list of numbers or strings on one line (shapes, normalisation vectors)."""
    text = json.dumps(document, indent=2)
    scalar_list = re.compile(r"\[\s*((?:(?:-?[\d.eE+-]+|\"[^\"\n]*\"|null)\s*,\s*)*(?:-?[\d.eE+-]+|\"[^\"\n]*\"|null))\s*\]")
    return scalar_list.sub(lambda m: "[" + re.sub(r"\s*,\s*", ", ", m.group(1)) + "]", text) + "\n"


def _to_onnx(module: nn.Module, args: tuple, io_shapes: tuple[dict, dict], opset: int) -> onnx.ModelProto:
    """Trace ``module`` to an ONNX model with the given {name: shape} inputs and outputs ("batch" is dynamic)."""
    inputs, outputs = io_shapes
    input_names, output_names = list(inputs), list(outputs)
    buffer = io.BytesIO()
    dynamic = {name: {0: BATCH} for name in input_names + output_names}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice and shape-check TracerWarnings
        torch.onnx.export(module, args, buffer, dynamo=False, export_params=True, opset_version=opset,
                          do_constant_folding=True, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic)
    model = onnx.load_model_from_string(buffer.getvalue())
    model.producer_name = "lpds_ros"
    # Write the declared shapes on the graph's edges (a traced reshape leaves its output dims symbolic).
    for value in list(model.graph.input) + list(model.graph.output):
        shape = {**inputs, **outputs}.get(value.name)
        if shape is not None:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for size in shape:
                dim = dims.add()
                if isinstance(size, str):
                    dim.dim_param = size
                else:
                    dim.dim_value = size
    onnx.checker.check_model(model)
    return model


@dataclasses.dataclass
class Parity:
    """How far the exported graphs are from torch on random inputs (max abs differences)."""

    vs_torch: dict[str, float]
    """|onnxruntime - torch float32| per graph."""
    torch_vs_float64: dict[str, float]
    """|torch float32 - torch float64|: the policy's own float32 rounding, the yardstick for the above."""
    ort_vs_float64: dict[str, float]
    """|onnxruntime - torch float64|."""

    def ok(self) -> bool:
        """Each graph within ``PARITY_TOLERANCE`` of torch, or no less accurate than torch float32 itself.

        The second clause is for the diffusion decoder: its first DDIM step divides by sqrt(abar_t) at the
        noisiest step (about 5e-4 for the cosine schedule with T = 100), so float32 rounding differences of
        1e-7 in the denoiser become 1e-4 .. 1e-3 in any unclipped element, in torch as much as in onnxruntime
        (torch at batch 1 and batch 4 differ by as much).
        """
        for name, diff in self.vs_torch.items():
            if not np.isfinite(diff):
                return False
            if diff > PARITY_TOLERANCE and self.ort_vs_float64[name] > 10 * self.torch_vs_float64[name] + 1e-5:
                return False
        return True

    def worst(self) -> float:
        return max(self.vs_torch.values())

    def to_dict(self) -> dict[str, dict[str, float]]:
        return dataclasses.asdict(self)


@torch.no_grad()
def _check_parity(policy: nn.Module, shift: nn.Module | None, decoder_model: onnx.ModelProto,
                  steering_model: onnx.ModelProto | None, seed: int) -> Parity:
    """Run the graphs in onnxruntime (CPU) and torch on random inputs at batch 1, 1 and 4."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3

    def session(model: onnx.ModelProto) -> ort.InferenceSession:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def diff(a, b) -> float:
        return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())

    rng = np.random.default_rng(seed)
    h, d = int(policy.horizon), int(policy.action_dim)
    cases = [(rng.standard_normal((b, int(policy.obs_dim)), dtype=np.float32),
              rng.standard_normal((b, h, d), dtype=np.float32)) for b in (1, 1, 4)]
    policy64 = copy.deepcopy(policy).double()
    graphs_to_check = {"decoder": session(decoder_model)}
    if steering_model is not None and shift is not None:
        graphs_to_check["steering"] = session(steering_model)
        graphs_to_check["steered"] = session(graphs.fuse_steered(decoder_model, steering_model))
    parity = Parity({}, {}, {})
    for name, sess in graphs_to_check.items():
        worst = [0.0, 0.0, 0.0]
        for obs, noise in cases:
            o = torch.from_numpy(obs)
            if name == "steering":
                ref = shift(o).reshape(noise.shape)
                out, ref32, ref64 = sess.run(None, {OBS: obs})[0], ref.numpy(), ref.numpy()
            else:
                w = torch.from_numpy(noise)
                if name == "steered":
                    w = w + shift(o).reshape(noise.shape)
                    out = sess.run(None, {OBS: obs, NOISE: noise})[0]
                else:
                    out = sess.run(None, {OBS: obs, LATENT: noise})[0]
                ref32 = policy.decode(o, w).numpy()
                ref64 = policy64.decode(o.double(), w.double()).numpy()
            for i, value in enumerate((diff(out, ref32), diff(ref32, ref64), diff(out, ref64))):
                worst[i] = max(worst[i], value)
        parity.vs_torch[name], parity.torch_vs_float64[name], parity.ort_vs_float64[name] = worst
    return parity


def _obs_keys(policy: nn.Module) -> list[str] | None:
    keys = (getattr(policy, "metadata", None) or {}).get("obs_keys")
    return list(keys) if isinstance(keys, (list, tuple)) and all(isinstance(k, str) for k in keys) else None


def _normalization(policy: nn.Module) -> dict[str, Any]:
    """The normalisation the graphs apply, for the record (obs -> clip((obs - mean) / std); chunk -> x * scale + center)."""
    from lpds_ros.policies.base import ACTION_HIGH, ACTION_LOW, OBS_CLIP

    def values(name: str) -> list[float] | None:
        tensor = getattr(policy, name, None)
        return [float(v) for v in tensor.detach().cpu().reshape(-1)] if isinstance(tensor, torch.Tensor) else None

    return {
        "obs_mean": values("obs_mean"), "obs_std": values("obs_std"), "obs_clip": OBS_CLIP,
        "action_center": values("action_center"), "action_scale": values("action_scale"),
        "action_low": ACTION_LOW, "action_high": ACTION_HIGH,
    }


# ------------------------------------------------------------------------------------------- the CLI
def load_steering(path: str | Path, policy: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """(steering agent, {"sha256", "decoder_checkpoint_sha256", "method", "file"}) from a steering checkpoint.

    ``path`` is a checkpoint file or a fine-tuning run folder.  The steering package's loader
    (``lpds_ros.steering.load_steering``) refuses a checkpoint trained against another decoder.
    """
    from lpds_ros import steering as steering_pkg
    from lpds_ros.steering.loop import CHECKPOINT_FILE

    path = Path(path)
    file = path / CHECKPOINT_FILE if path.is_dir() else path
    agent = steering_pkg.load_steering(path, policy)
    method = getattr(agent, "name", None) or type(agent).__name__
    if getattr(getattr(agent, "config", None), "learn_scale", False):
        raise LpdsError(f"{path}: an lpds-gauss checkpoint draws w = mu(s) + sigma(s)*eps, and the runtime applies "
                        "w = eps + Delta(s) only: export an lpds or lpds-nolagrange checkpoint")
    if not callable(getattr(agent, "shift", None)):
        raise LpdsError(f"{path}: a {method} checkpoint has no latent shift Delta(s) to export "
                        "(only LP-DS steering exports as obs -> delta)")
    record = {
        "sha256": sha256_file(file),
        "decoder_checkpoint_sha256": getattr(agent, "decoder_checkpoint_sha256", None) or getattr(policy, "checkpoint_sha256", None),
        "method": method,
        "file": str(file),
    }
    return agent, record


def main(args) -> int:
    """`lpds export --policy DIR [--steering CKPT] --out DIR`."""
    from lpds_ros.policies import load_policy

    policy = load_policy(args.policy)
    steering, record = (None, None)
    if args.steering:
        if not Path(args.steering).exists():
            raise LpdsError(f"{args.steering}: steering checkpoint not found")
        steering, record = load_steering(args.steering, policy)
    source = {"policy": str(args.policy)}
    if args.steering:
        source["steering"] = str(args.steering)
    manifest = export_policy(policy, args.out, steering=steering, steering_checkpoint=record, opset=args.opset,
                             specialize=not args.no_specialize, overwrite=args.overwrite, source=source)
    files = [manifest.decoder.file] + ([manifest.steering.file] if manifest.steering else [])
    print(f"wrote {args.out}: {', '.join(files)}, {MANIFEST_FILE} ({manifest.backbone}, K={manifest.num_inference_steps}, "
          f"H={manifest.horizon}, d={manifest.action_dim}, obs_dim={manifest.obs_dim}, opset {manifest.opset}; "
          f"{manifest.export['decoder_graph']}; max |ort - torch| {max(manifest.export['parity']['vs_torch'].values()):.1e})")
    return 0
