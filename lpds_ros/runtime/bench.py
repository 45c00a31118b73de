"""``lpds bench-latency``: how long one decision takes, onnxruntime against eager torch, in one run.

A *call* is one decision as the policy node makes it: a raw observation (numpy) in, fresh prior noise
eps ~ N(0, I) drawn from a seeded numpy Generator, w = eps + Delta(s) (steered) or w = eps (base), the
K-step decode, and the chunk back as a numpy array.  Both backends do exactly that, so the difference is
the runtime.  Calls are timed one by one with ``time.perf_counter_ns`` (Python's garbage collector left
on, as in a node), in alternating blocks of onnxruntime and torch calls so that a noisy neighbour on a
shared machine hits both alike.  Batch-64 throughput (chunks per second) is measured the same way for
parallel simulated envs.

Without ``--model`` the reference policies are built with ``make_policy`` and random weights: the
3 x 512 residual-MLP denoiser, chunk H x d = 8 x 7, diffusion K = 5 and flow K = 4 and 10, each with an
LP-DS steering network (3 x 256, LayerNorm + tanh) whose output layer is random (non-zero), and the
results go to results/latency.json.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lpds_ros.errors import LpdsError
from lpds_ros.utils import atomic_write_text

REFERENCE_CONFIGS = (("diffusion", 5), ("flow", 4), ("flow", 10))
"""(backbone, K) of the reference policies."""
REFERENCE_OBS_DIM = 32
REFERENCE_HORIZON, REFERENCE_EXEC_HORIZON, REFERENCE_ACTION_DIM = 8, 4, 7
DEFAULT_RESULTS = Path("results/latency.json")
BLOCKS = 4
"""Timed calls are split into this many alternating blocks per backend."""
WARMUP_CALLS = 200


# ------------------------------------------------------------------------------------- timing
def percentiles(ns: np.ndarray) -> dict[str, float]:
    ms = ns / 1e6
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p90_ms": round(float(np.percentile(ms, 90)), 4),
            "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "max_ms": round(float(ms.max()), 4), "mean_ms": round(float(ms.mean()), 4), "calls": int(ms.size)}


def time_alternating(fns: dict[str, Callable[[int], Any]], calls: int, warmup: int = WARMUP_CALLS) -> dict[str, np.ndarray]:
    """Per-call nanoseconds of each ``fn(i)``, ``calls`` each, run in ``BLOCKS`` alternating blocks."""
    for fn in fns.values():
        for i in range(warmup):
            fn(i)
    times = {name: np.empty(calls, np.int64) for name in fns}
    bounds = np.linspace(0, calls, BLOCKS + 1).astype(int)
    clock = time.perf_counter_ns
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        for name, fn in fns.items():
            out = times[name]
            for i in range(lo, hi):
                t0 = clock()
                fn(i)
                out[i] = clock() - t0
    return times


def throughput(fns: dict[str, Callable[[int], Any]], calls: int, batch: int) -> dict[str, float]:
    """Chunks per second of each batched ``fn(i)`` (``batch`` chunks per call)."""
    result = {}
    for name, fn in fns.items():
        for i in range(10):
            fn(i)
        t0 = time.perf_counter()
        for i in range(calls):
            fn(i)
        result[name] = round(batch * calls / (time.perf_counter() - t0), 1)
    return result


# ----------------------------------------------------------------------------------- backends
class TorchActor:
    """The eager-torch decision: numpy obs -> eps from the rng -> w -> ``policy.decode`` -> numpy chunk."""

    def __init__(self, policy, shift=None) -> None:
        import torch

        self.torch = torch
        self.policy, self.shift = policy, shift
        self.shape = (policy.horizon, policy.action_dim)

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        torch = self.torch
        single = obs.ndim == 1
        o = torch.from_numpy(obs[None] if single else obs)
        eps = torch.from_numpy(rng.standard_normal((o.shape[0], *self.shape), dtype=np.float32))
        with torch.inference_mode():
            w = eps if self.shift is None else eps + self.shift(o).reshape(eps.shape)
            chunk = self.policy.decode(o, w).numpy()
        return chunk[0] if single else chunk


def reference_models(backbone: str, k: int, seed: int):
    """(policy, LP-DS agent) at the reference size with random weights (the agent's Delta is non-zero)."""
    import torch

    from lpds_ros.policies import PolicyConfig, make_policy
    from lpds_ros.steering.config import LPDSConfig
    from lpds_ros.steering.lpds import LPDSAgent

    torch.manual_seed(seed)
    config = PolicyConfig(obs_dim=REFERENCE_OBS_DIM, action_dim=REFERENCE_ACTION_DIM, backbone=backbone,
                          horizon=REFERENCE_HORIZON, exec_horizon=REFERENCE_EXEC_HORIZON, num_inference_steps=k)
    policy = make_policy(config)
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(256, REFERENCE_OBS_DIM, generator=g) * 2 + 1
    actions = torch.rand(256, REFERENCE_HORIZON, REFERENCE_ACTION_DIM, generator=g) * 1.6 - 0.8
    policy.set_normalizer(obs, actions)
    policy.eval().requires_grad_(False)
    agent = LPDSAgent(policy, LPDSConfig(delta=0.35), seed=seed)
    last = agent.nets["delta"][-1]
    with torch.no_grad():
        last.weight.normal_(0.0, 0.02, generator=g)  # a trained-looking, non-zero shift
    agent.eval().requires_grad_(False)
    return policy, agent


def _export(policy, agent, directory: Path, specialize: bool = True):
    from lpds_ros.runtime.export import export_policy

    return export_policy(policy, directory, steering=agent, specialize=specialize, overwrite=True)


def measure(onnx_policy, torch_actor: TorchActor, calls: int, batch: int, batch_calls: int, seed: int,
            extra_onnx: dict[str, Any] | None = None) -> dict[str, Any]:
    """Latency (batch 1) and throughput (``batch``) of ``onnx_policy.act`` vs ``torch_actor.act``."""
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((64, onnx_policy.obs_dim)).astype(np.float32)
    batches = rng.standard_normal((4, max(batch, 1), onnx_policy.obs_dim)).astype(np.float32)
    gens = {name: np.random.default_rng(seed + i) for i, name in enumerate(["onnxruntime", "torch", *(extra_onnx or {})])}
    fns = {"onnxruntime": lambda i: onnx_policy.act(pool[i % 64], gens["onnxruntime"]),
           "torch": lambda i: torch_actor.act(pool[i % 64], gens["torch"])}
    for name, other in (extra_onnx or {}).items():
        fns[name] = (lambda pol, g: (lambda i: pol.act(pool[i % 64], g)))(other, gens[name])
    times = time_alternating(fns, calls)
    result: dict[str, Any] = {name: percentiles(t) for name, t in times.items()}
    result["speedup_p50"] = round(result["torch"]["p50_ms"] / result["onnxruntime"]["p50_ms"], 2)
    result["speedup_p99"] = round(result["torch"]["p99_ms"] / result["onnxruntime"]["p99_ms"], 2)
    if batch > 0:
        tp = throughput({"onnxruntime": lambda i: onnx_policy.act(batches[i % 4], gens["onnxruntime"]),
                         "torch": lambda i: torch_actor.act(batches[i % 4], gens["torch"])}, batch_calls, batch)
        result["throughput"] = {"batch": batch, "calls": batch_calls,
                                **{f"{name}_chunks_per_s": value for name, value in tp.items()}}
    return result


def conditions(threads: int, providers: list[str]) -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores_visible": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)),
        "nice": os.nice(0), "loadavg": [round(x, 2) for x in os.getloadavg()], "threads": threads,
        "providers": providers, "gc": "enabled", "python": platform.python_version(),
        "numpy": np.__version__, "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ------------------------------------------------------------------------------------- the CLI
def _setup(args) -> None:
    import torch

    if args.calls < 1 or args.batch < 0 or args.batch_calls < 1 or args.threads < 1:
        raise LpdsError("--calls, --batch-calls and --threads must be >= 1 and --batch >= 0")
    if args.cpu is not None:
        try:
            os.sched_setaffinity(0, {args.cpu})
        except (OSError, ValueError) as exc:
            raise LpdsError(f"--cpu {args.cpu}: cannot pin to that core ({exc})") from None
    torch.set_num_threads(args.threads)


def _run_reference(args) -> dict[str, Any]:
    from lpds_ros.runtime.session import OnnxPolicy

    runs = []
    with tempfile.TemporaryDirectory(prefix="lpds-bench-") as tmp:
        for backbone, k in REFERENCE_CONFIGS:
            policy, agent = reference_models(backbone, k, args.seed)
            fast_dir, plain_dir = Path(tmp) / f"{backbone}-k{k}", Path(tmp) / f"{backbone}-k{k}-plain"
            manifest = _export(policy, agent, fast_dir)
            _export(policy, agent, plain_dir, specialize=False)
            kw = dict(providers=args.providers, intra_op_threads=args.threads)
            steered = OnnxPolicy(fast_dir, mode="steered", **kw)
            extra = {"onnxruntime_base": OnnxPolicy(fast_dir, mode="base", **kw),
                     "onnxruntime_plain_graph": OnnxPolicy(plain_dir, mode="steered", **kw)}
            if args.mode == "base":
                steered, extra = extra["onnxruntime_base"], {"onnxruntime_plain_graph": OnnxPolicy(plain_dir, mode="base", **kw)}
            actor = TorchActor(policy, None if args.mode == "base" else agent.shift)
            print(f"# {backbone} K={k}: measuring {args.calls} calls per backend ...", file=sys.stderr, flush=True)
            row = {"name": f"{backbone} K={k}", "backbone": backbone, "K": k, "H": manifest.horizon,
                   "d": manifest.action_dim, "obs_dim": manifest.obs_dim, "mode": steered.mode,
                   "decoder_graph": manifest.export["decoder_graph"], "providers": steered.providers}
            row.update(measure(steered, actor, args.calls, args.batch, args.batch_calls, args.seed, extra))
            runs.append(row)
    return {"runs": runs}


def _run_model(args) -> dict[str, Any]:
    from lpds_ros.policies import load_policy
    from lpds_ros.runtime.export import export_policy, load_steering
    from lpds_ros.runtime.manifest import MANIFEST_FILE
    from lpds_ros.runtime.session import OnnxPolicy

    model = Path(args.model)
    with tempfile.TemporaryDirectory(prefix="lpds-bench-") as tmp:
        if (model / MANIFEST_FILE).is_file():
            export_dir = model
            onnx_policy = OnnxPolicy(export_dir, mode=args.mode, providers=args.providers, intra_op_threads=args.threads)
            source = onnx_policy.manifest.export.get("source", {})
            policy_dir = args.policy or source.get("policy")
            if not policy_dir:
                raise LpdsError(f"{model}: the manifest records no torch policy; pass --policy DIR for the eager side")
            policy = load_policy(policy_dir)
            if onnx_policy.manifest.decoder_checkpoint_sha256 not in (None, policy.checkpoint_sha256):
                raise LpdsError(f"{policy_dir}: not the policy {model} was exported from (checkpoint SHA-256 differs)")
            steering_path = args.steering or source.get("steering")
        elif (model / "config.json").is_file():
            policy = load_policy(model)
            steering_path = args.steering
            steering, record = load_steering(steering_path, policy) if steering_path else (None, None)
            export_dir = Path(tmp) / "export"
            export_policy(policy, export_dir, steering=steering, steering_checkpoint=record, source={"policy": str(model)})
            onnx_policy = OnnxPolicy(export_dir, mode=args.mode, providers=args.providers, intra_op_threads=args.threads)
        else:
            raise LpdsError(f"{model}: neither an export folder ({MANIFEST_FILE}) nor a policy folder (config.json)")
        shift = None
        if onnx_policy.steered:
            if not steering_path:
                raise LpdsError(f"{model}: steered mode needs the torch steering checkpoint; pass --steering CKPT")
            agent, _ = load_steering(steering_path, policy)
            shift = agent.shift
        m = onnx_policy.manifest
        print(f"# {model}: measuring {args.calls} calls per backend ...", file=sys.stderr, flush=True)
        row = {"name": str(model), "backbone": m.backbone, "K": m.num_inference_steps, "H": m.horizon,
               "d": m.action_dim, "obs_dim": m.obs_dim, "mode": onnx_policy.mode,
               "decoder_graph": m.export.get("decoder_graph"), "providers": onnx_policy.providers}
        row.update(measure(onnx_policy, TorchActor(policy, shift), args.calls, args.batch, args.batch_calls, args.seed))
    return row


def format_table(runs: list[dict[str, Any]]) -> str:
    header = f"{'config':<16} {'mode':<8} {'backend':<24} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'chunks/s @B':>14}"
    lines = [header, "-" * len(header)]
    for run in runs:
        tp = run.get("throughput", {})
        for backend in ("torch", "onnxruntime", "onnxruntime_base", "onnxruntime_plain_graph"):
            if backend not in run:
                continue
            r = run[backend]
            rate = tp.get(f"{backend}_chunks_per_s")
            rate_text = f"{rate:>9.0f} @{tp['batch']}" if rate is not None else ""
            mode = "base" if backend == "onnxruntime_base" else run["mode"]
            lines.append(f"{run['name']:<16} {mode:<8} {backend:<24} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
                         f"{r['max_ms']:>8.2f} {rate_text:>14}")
        lines.append(f"{'':<16} {'':<8} {'speedup (torch/ort)':<24} {run['speedup_p50']:>7.2f}x {run['speedup_p99']:>7.2f}x")
    return "\n".join(lines)


def main(args) -> int:
    _setup(args)
    started = conditions(args.threads, [])
    if args.model:
        result = _run_model(args)
        runs = [result]
    else:
        result = _run_reference(args)
        runs = result["runs"]
    result["conditions"] = {**started, "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                            "providers": runs[0].get("providers")}
    result["command"] = "lpds " + " ".join(sys.argv[1:])
    print(format_table(runs))
    c = result["conditions"]
    print(f"# {c['cpu']}, affinity {c['affinity']}, {c['threads']} thread(s), providers {c['providers']}, "
          f"load {c['loadavg']} -> {c['loadavg_after']}, onnxruntime {c['onnxruntime']}, torch {c['torch']}")
    out = Path(args.out) if args.out else (None if args.model else DEFAULT_RESULTS)
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        print(f"# wrote {out}")
    if args.json:
        if args.model:
            print(json.dumps(result))
        else:
            first = runs[0]
            print(json.dumps({"onnxruntime": first["onnxruntime"], "torch": first["torch"], **result}))
    gc.collect()
    return 0
