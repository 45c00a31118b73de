"""GPU latency of the reference policies (the companion of ``lpds bench-latency``, which measures the CPU).

    python benchmarks/latency.py --calls 10000 --out results/latency_gpu.json

One call is the same decision as in ``lpds bench-latency``: a numpy observation in, eps drawn from a
seeded numpy Generator, w = eps + Delta(s), the K-step decode, the chunk back in host memory.  Backends:

- ``torch_cuda``: eager torch on the GPU;
- ``torch_cuda_graph``: the same decode captured once as a CUDA graph and replayed (static buffers);
- ``onnxruntime_<provider>``: the exported graphs in onnxruntime with its CUDA / TensorRT provider, when
  the installed onnxruntime has one (``pip install .[gpu]``).

Batch 1 (latency) and batch 64 (throughput of parallel sim envs), diffusion K = 5 and flow K = 4 / 10.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lpds_ros.runtime.bench import (  # noqa: E402
    REFERENCE_CONFIGS,
    _export,
    percentiles,
    reference_models,
    time_alternating,
)
from lpds_ros.runtime.session import GPU_PROVIDERS, OnnxPolicy  # noqa: E402
from lpds_ros.utils import atomic_write_text  # noqa: E402


class CudaActor:
    """Steered decode on the GPU, eager or replayed from a captured CUDA graph, for one batch size."""

    def __init__(self, policy, agent, batch: int, graph: bool) -> None:
        self.policy, self.agent = policy, agent
        self.shape = (batch, policy.horizon, policy.action_dim)
        self.obs = torch.zeros(batch, policy.obs_dim, device="cuda")
        self.eps = torch.zeros(self.shape, device="cuda")
        self.host_obs = torch.zeros(batch, policy.obs_dim).pin_memory()
        self.host_eps = torch.zeros(self.shape).pin_memory()
        self.graph = None
        if graph:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(3):
                    self._forward()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph), torch.inference_mode():
                self.out = self._forward()

    def _forward(self) -> torch.Tensor:
        w = self.eps + self.agent.shift(self.obs).reshape(self.shape)
        return self.policy.decode(self.obs, w)

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        self.host_obs.numpy()[...] = obs.reshape(self.host_obs.shape)
        rng.standard_normal(dtype=np.float32, out=self.host_eps.numpy())
        self.obs.copy_(self.host_obs, non_blocking=True)
        self.eps.copy_(self.host_eps, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
            return self.out.cpu().numpy()
        with torch.inference_mode():
            return self._forward().cpu().numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batch-calls", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/latency_gpu.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (use `lpds bench-latency` for the CPU)", file=sys.stderr)
        return 1
    import onnxruntime as ort

    ort_gpu = [p for p in GPU_PROVIDERS if p in ort.get_available_providers()]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone, k in REFERENCE_CONFIGS:
            policy, agent = reference_models(backbone, k, args.seed)
            policy.to("cuda")
            agent.to("cuda")
            export_dir = Path(tmp) / f"{backbone}-{k}"
            if ort_gpu:
                _export(policy.to("cpu"), agent.to("cpu"), export_dir)
                policy.to("cuda")
                agent.to("cuda")
            rng = np.random.default_rng(args.seed)
            row = {"name": f"{backbone} K={k}", "mode": "steered"}
            for batch, key in ((1, "latency"), (args.batch, "throughput")):
                obs = rng.standard_normal((8, batch, policy.obs_dim)).astype(np.float32)
                actors = {"torch_cuda": CudaActor(policy, agent, batch, graph=False),
                          "torch_cuda_graph": CudaActor(policy, agent, batch, graph=True)}
                for provider in ort_gpu:
                    actors[f"onnxruntime_{provider.replace('ExecutionProvider', '').lower()}"] = OnnxPolicy(
                        export_dir, providers=[provider, "CPUExecutionProvider"])
                gens = {name: np.random.default_rng(args.seed) for name in actors}
                fns = {name: (lambda a, g: (lambda i: a.act(obs[i % 8][0] if batch == 1 else obs[i % 8], g)))(actor, gens[name])
                       for name, actor in actors.items()}
                calls = args.calls if batch == 1 else args.batch_calls
                times = time_alternating(fns, calls, warmup=50)
                if batch == 1:
                    row.update({name: percentiles(t) for name, t in times.items()})
                else:
                    row["throughput"] = {"batch": batch, **{f"{name}_chunks_per_s": round(batch * 1e9 / float(np.mean(t)), 1)
                                                            for name, t in times.items()}}
            runs.append(row)
            print(json.dumps(row), flush=True)
    result = {"runs": runs, "conditions": {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "onnxruntime": ort.__version__,
        "onnxruntime_gpu_providers": ort_gpu, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["conditions"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
