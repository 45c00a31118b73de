"""Control-rate runtime: the frozen decoder and the LP-DS steering network in ONNX / onnxruntime.

    lpds export --policy models/<policy> [--steering <ckpt>] --out models/<name>/     # torch -> ONNX
    policy = OnnxPolicy("models/<name>")          # checks hashes and shapes; no torch import
    chunk = policy.act(obs, rng)                  # fresh eps ~ N(0, I) from rng; w = eps + Delta(s)

``lpds_ros.runtime.export`` (``export_policy``) needs torch and is imported on its own; ``OnnxPolicy``
needs only numpy, onnx and onnxruntime.  ``lpds bench-latency`` lives in ``lpds_ros.runtime.bench``.
See docs/runtime.md for the file layout, graph names and opset.
"""
from lpds_ros.runtime.manifest import MANIFEST_FILE, GraphEntry, Manifest, load_manifest
from lpds_ros.runtime.session import OnnxPolicy, choose_providers

__all__ = ["MANIFEST_FILE", "GraphEntry", "Manifest", "OnnxPolicy", "choose_providers", "load_manifest"]
