"""The control-rate runtime: ONNX export, onnxruntime parity with torch, manifest checks, the CLI."""
from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from lpds_ros.cli import main as lpds
from lpds_ros.errors import LpdsError
from lpds_ros.policies import Decoder, PolicyConfig, load_policy, make_policy
from lpds_ros.runtime import MANIFEST_FILE, OnnxPolicy, load_manifest
from lpds_ros.runtime.export import export_policy
from lpds_ros.runtime.graphs import metadata, set_metadata
from lpds_ros.steering.config import LPDSConfig
from lpds_ros.steering.lpds import LPDSAgent
from lpds_ros.utils import sha256_file

SMALL = dict(hidden_dim=64, num_layers=2, cond_dim=32, time_embed_dim=16)
OBS_DIM, ACTION_DIM = 6, 3
TOL = 1e-4


def make_models(backbone: str, seed: int = 0, **overrides):
    """A small random policy with non-trivial normalisers and an LP-DS agent with a non-zero shift."""
    torch.manual_seed(seed)
    policy = make_policy(PolicyConfig(obs_dim=OBS_DIM, action_dim=ACTION_DIM, backbone=backbone, **{**SMALL, **overrides}))
    g = torch.Generator().manual_seed(seed)
    policy.set_normalizer(torch.randn(128, OBS_DIM, generator=g) * 3 + 1,
                          torch.rand(128, policy.horizon, ACTION_DIM, generator=g) * 1.2 - 0.7)
    policy.eval().requires_grad_(False)
    agent = LPDSAgent(policy, LPDSConfig(hidden_dims=(32, 32), delta=0.35), seed=seed)
    with torch.no_grad():
        agent.nets["delta"][-1].weight.normal_(0.0, 0.1, generator=g)
        agent.nets["delta"][-1].bias.normal_(0.0, 0.1, generator=g)
    agent.eval().requires_grad_(False)
    return policy, agent


@pytest.fixture(scope="module", params=["diffusion", "flow"])
def exported(request, tmp_path_factory):
    policy, agent = make_models(request.param)
    out = tmp_path_factory.mktemp(f"export-{request.param}")
    manifest = export_policy(policy, out, steering=agent)
    return policy, agent, out, manifest


def torch_chunk(policy, obs, w):
    with torch.no_grad():
        return policy.decode(torch.as_tensor(obs), torch.as_tensor(w)).numpy()


def assert_parity(policy, got, obs, w):
    """|onnxruntime - torch| < TOL, on the rows whose decode is well conditioned in float32.

    DDIM's first step divides by sqrt(abar) ~ 5e-4 at t = 99, so an element whose predicted clean action
    lands inside the clip box carries float32 rounding x ~2000 in torch itself; such rows (torch float32
    vs float64 > 1e-5) are held to being no less accurate than torch instead.
    """
    ref32 = torch_chunk(policy, obs, w)
    with torch.no_grad():
        p64 = copy.deepcopy(policy).double()
        ref64 = p64.decode(torch.as_tensor(obs).double(), torch.as_tensor(w).double()).numpy()
    rows = np.abs(ref32 - ref64).reshape(len(obs), -1).max(1)
    good = rows < 1e-5
    assert good.mean() >= 0.5, "test inputs should be mostly well conditioned"
    assert np.abs(got - ref32)[good].max() < TOL
    assert np.abs(got - ref64).max() <= 10 * np.abs(ref32 - ref64).max() + 1e-5


# ----------------------------------------------------------------------------------------------- parity
def test_decoder_parity_both_backbones(exported):
    policy, _, out, manifest = exported
    assert manifest.export["decoder_graph"] == "step-specialised"
    session = OnnxPolicy(out, mode="base")
    rng = np.random.default_rng(1)
    for batch in (1, 1, 5):
        obs = (rng.standard_normal((batch, OBS_DIM)) * 3).astype(np.float32)
        z = rng.standard_normal((batch, policy.horizon, ACTION_DIM)).astype(np.float32)
        assert_parity(policy, session.decode(obs, z), obs, z)
    # The single-observation form and the torch-tensor form of decode give the same numbers.
    single = session.decode(obs[0], z[0])
    assert single.shape == (policy.horizon, ACTION_DIM)
    assert np.allclose(single, session.decode(obs[:1], z[:1])[0], atol=1e-6)
    assert isinstance(session, Decoder)  # the same decoder interface as the torch policies
    as_torch = session.decode(torch.from_numpy(obs), torch.from_numpy(z))
    assert isinstance(as_torch, torch.Tensor) and np.allclose(as_torch.numpy(), session.decode(obs, z), atol=1e-6)


@pytest.mark.parametrize("backbone", ["diffusion", "flow"])
def test_plain_graph_parity(tmp_path, backbone):
    policy, _ = make_models(backbone, seed=3)
    manifest = export_policy(policy, tmp_path, specialize=False)
    assert manifest.export["decoder_graph"] == "plain" and manifest.steering is None
    session = OnnxPolicy(tmp_path)
    assert session.mode == "base"
    rng = np.random.default_rng(2)
    obs = rng.standard_normal((3, OBS_DIM)).astype(np.float32)
    z = rng.standard_normal((3, policy.horizon, ACTION_DIM)).astype(np.float32)
    assert_parity(policy, session.decode(obs, z), obs, z)


def test_steering_and_steered_act_parity(exported):
    policy, agent, out, _ = exported
    session = OnnxPolicy(out)
    assert session.mode == "steered" and session.steered
    rng = np.random.default_rng(4)
    obs = (rng.standard_normal((4, OBS_DIM)) * 2).astype(np.float32)
    with torch.no_grad():
        delta = agent.shift(torch.from_numpy(obs)).reshape(4, policy.horizon, ACTION_DIM).numpy()
    assert np.abs(delta).max() > 0.05  # the shift is not trivially zero
    assert np.abs(session.shift(obs) - delta).max() < TOL
    # act: fresh eps from the generator, w = eps + Delta(s); replay the same generator for torch.
    chunks = np.stack([session.act(o, np.random.default_rng(100 + i)) for i, o in enumerate(obs)])
    eps = np.stack([np.random.default_rng(100 + i).standard_normal((policy.horizon, ACTION_DIM), dtype=np.float32)
                    for i in range(4)])
    assert_parity(policy, chunks, obs, eps + delta)
    assert np.all(np.abs(chunks) <= 1.0)
    # policy_chunk with eps = 0 is the mean policy Phi(s, Delta(s)).
    zero = np.zeros((4, policy.horizon, ACTION_DIM), np.float32)
    assert_parity(policy, session.policy_chunk(obs, zero), obs, delta)


def test_act_draws_fresh_noise_from_the_generator(exported):
    policy, _, out, _ = exported
    session = OnnxPolicy(out, mode="base")
    obs = np.ones(OBS_DIM, np.float32)
    a = session.act(obs, np.random.default_rng(7))
    b = session.act(obs, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    c, d = session.act(obs, rng), session.act(obs, rng)
    assert np.array_equal(a, b) and np.array_equal(a, c)  # seeded: reproducible
    assert not np.allclose(c, d)  # fresh eps each call
    batch = session.act(np.stack([obs] * 3), np.random.default_rng(7))
    assert batch.shape == (3, policy.horizon, ACTION_DIM)
    with pytest.raises(ValueError, match="obs must have shape"):
        session.act(np.zeros(OBS_DIM + 1, np.float32), rng)


# ----------------------------------------------------------------------------------- manifest: K and H
def test_k_and_h_are_read_from_the_manifest(tmp_path):
    policy, agent = make_models("diffusion", horizon=6, exec_horizon=3, num_inference_steps=3)
    export_policy(policy, tmp_path, steering=agent)
    doc = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert (doc["num_inference_steps"], doc["horizon"], doc["exec_horizon"], doc["action_dim"]) == (3, 6, 3, ACTION_DIM)
    assert doc["graphs"]["decoder"]["inputs"] == {"obs": ["batch", OBS_DIM], "z": ["batch", 6, ACTION_DIM]}
    session = OnnxPolicy(tmp_path)
    assert (session.num_inference_steps, session.horizon, session.exec_horizon) == (3, 6, 3)
    chunk = session.act(np.zeros(OBS_DIM, np.float32), np.random.default_rng(0))
    assert chunk.shape == (6, ACTION_DIM)
    rng = np.random.default_rng(5)
    obs = rng.standard_normal((2, OBS_DIM)).astype(np.float32)
    z = rng.standard_normal((2, 6, ACTION_DIM)).astype(np.float32)
    assert_parity(policy, session.decode(obs, z), obs, z)
    # The graph really runs K = 3 steps: a K = 5 policy with the same weights decodes differently.
    policy5 = make_policy(PolicyConfig(**{**policy.config.__dict__, "num_inference_steps": 5}))
    policy5.load_state_dict(policy.state_dict())
    assert np.abs(torch_chunk(policy5.eval(), obs, z) - session.decode(obs, z)).max() > 1e-3


def test_manifest_records_shapes_normalisation_and_hashes(exported):
    policy, _, out, manifest = exported
    doc = json.loads((out / MANIFEST_FILE).read_text())
    assert doc["opset"] == 17 and doc["backbone"] == policy.config.backbone
    assert doc["graphs"]["decoder"]["sha256"] == sha256_file(out / "decoder.onnx")
    assert doc["graphs"]["steering"]["sha256"] == sha256_file(out / "steering.onnx")
    assert doc["graphs"]["steering"]["outputs"] == {"delta": ["batch", policy.horizon, ACTION_DIM]}
    assert np.allclose(doc["normalization"]["obs_mean"], policy.obs_mean.numpy())
    assert doc["export"]["parity"]["vs_torch"]["decoder"] < 1e-3
    for name in ("decoder.onnx", "steering.onnx"):
        meta = metadata(onnx.load(str(out / name)))
        assert meta["lpds_ros.num_inference_steps"] == str(policy.num_inference_steps)
        assert meta["lpds_ros.horizon"] == str(policy.horizon)
    assert load_manifest(out).to_dict() == doc


# ------------------------------------------------------------------------------- corrupted / edited files
@pytest.fixture()
def export_copy(exported, tmp_path):
    _, _, out, _ = exported
    target = tmp_path / "model"
    shutil.copytree(out, target)
    return target


def one_line_error(directory, match: str, **kwargs) -> str:
    with pytest.raises(LpdsError, match=match) as info:
        OnnxPolicy(directory, **kwargs)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    return message


def rehash(directory, graph: str = "decoder") -> None:
    doc = json.loads((directory / MANIFEST_FILE).read_text())
    doc["graphs"][graph]["sha256"] = sha256_file(directory / doc["graphs"][graph]["file"])
    (directory / MANIFEST_FILE).write_text(json.dumps(doc))


def test_corrupted_onnx_file_fails_with_one_line(export_copy):
    path = export_copy / "decoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    path.write_bytes(bytes(data))
    message = one_line_error(export_copy, "SHA-256")
    assert "decoder.onnx" in message and "re-export" in message


def test_truncated_onnx_with_matching_hash_fails_with_one_line(export_copy):
    path = export_copy / "steering.onnx"
    path.write_bytes(path.read_bytes()[:100])
    rehash(export_copy, "steering")
    one_line_error(export_copy, "steering.onnx: not a valid ONNX model")


def test_edited_onnx_graph_with_matching_hash_fails_with_one_line(export_copy):
    path = export_copy / "decoder.onnx"
    model = onnx.load(str(path))
    set_metadata(model, {"lpds_ros.num_inference_steps": "9"})
    onnx.save(model, str(path))
    rehash(export_copy)
    one_line_error(export_copy, "num_inference_steps = '9'")


def test_manifest_hash_mismatch_fails_with_one_line(export_copy):
    doc = json.loads((export_copy / MANIFEST_FILE).read_text())
    doc["graphs"]["steering"]["sha256"] = "0" * 64
    (export_copy / MANIFEST_FILE).write_text(json.dumps(doc))
    one_line_error(export_copy, "steering.onnx: SHA-256 .* does not match manifest.json")


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(horizon=d["horizon"] + 1), "graphs.decoder.inputs"),
    (lambda d: d.update(num_inference_steps=2), "num_inference_steps = "),
    (lambda d: d.update(format_version=99), "format_version 99"),
    (lambda d: d["graphs"]["decoder"].update(file="../decoder.onnx"), "plain file name"),
    (lambda d: d.pop("obs_dim"), "field 'obs_dim'"),
])
def test_edited_manifest_fails_with_one_line(export_copy, edit, match):
    doc = json.loads((export_copy / MANIFEST_FILE).read_text())
    edit(doc)
    (export_copy / MANIFEST_FILE).write_text(json.dumps(doc))
    one_line_error(export_copy, match)


def test_missing_files_and_modes(export_copy, tmp_path):
    one_line_error(tmp_path / "nowhere", "export folder not found")
    (export_copy / "steering.onnx").unlink()
    one_line_error(export_copy, "steering.onnx: missing")
    one_line_error(export_copy, "mode 'fast'", mode="fast")


def test_steering_trained_on_another_decoder_is_refused(tmp_path):
    policy, agent = make_models("flow")
    policy.checkpoint_sha256 = "a" * 64
    with pytest.raises(LpdsError, match="trained against decoder bbbbbbbbbbbb"):
        export_policy(policy, tmp_path, steering=agent,
                      steering_checkpoint={"sha256": "c" * 64, "decoder_checkpoint_sha256": "b" * 64, "method": "lpds"})
    export_policy(policy, tmp_path, steering=agent,
                  steering_checkpoint={"sha256": "c" * 64, "decoder_checkpoint_sha256": "a" * 64, "method": "lpds"})
    with pytest.raises(LpdsError, match="--overwrite"):
        export_policy(policy, tmp_path)


# ------------------------------------------------------------------------------------------------- CLI
def save_steering_checkpoint(agent, decoder, path) -> None:
    """A steering checkpoint as the fine-tuning loop writes it (the fields its loader reads)."""
    from lpds_ros.config import config_to_dict
    from lpds_ros.steering.loop import CHECKPOINT_FORMAT

    torch.save({"format": CHECKPOINT_FORMAT, "method": agent.name, "task": "test",
                "decoder_sha256": decoder.checkpoint_sha256, "agent_config": config_to_dict(agent.config),
                "agent": agent.state()}, path)


def test_cli_export_and_bench_latency(tmp_path, capsys):
    policy, _ = make_models("flow", num_inference_steps=4)
    policy.save(tmp_path / "policy")
    decoder = load_policy(tmp_path / "policy")
    _, agent = make_models("flow", num_inference_steps=4)
    agent = LPDSAgent(decoder, agent.config, seed=0)
    with torch.no_grad():
        agent.nets["delta"][-1].weight.normal_(0.0, 0.1)
    save_steering_checkpoint(agent, decoder, tmp_path / "steering.pt")
    out = tmp_path / "onnx"
    args = ["export", "--policy", str(tmp_path / "policy"), "--steering", str(tmp_path / "steering.pt"), "--out", str(out)]
    assert lpds(args) == 0
    manifest = load_manifest(out)
    assert manifest.decoder_checkpoint_sha256 == decoder.checkpoint_sha256
    assert manifest.steering_checkpoint["decoder_checkpoint_sha256"] == decoder.checkpoint_sha256
    assert manifest.steering_checkpoint["method"] == "lpds"
    assert manifest.export["source"] == {"policy": str(tmp_path / "policy"), "steering": str(tmp_path / "steering.pt")}
    session = OnnxPolicy(out)
    obs = np.linspace(-1, 1, OBS_DIM, dtype=np.float32)
    with torch.no_grad():
        delta = agent.shift(torch.from_numpy(obs)[None]).reshape(decoder.horizon, ACTION_DIM).numpy()
    assert np.abs(session.shift(obs) - delta).max() < TOL
    assert lpds(args) == 2  # no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert lpds(["bench-latency", "--model", str(out), "--calls", "40", "--batch", "8", "--batch-calls", "3", "--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    for backend in ("onnxruntime", "torch"):
        assert set(result[backend]) >= {"p50_ms", "p99_ms", "max_ms"}
        assert 0 < result[backend]["p50_ms"] <= result[backend]["p99_ms"] <= result[backend]["max_ms"]
    assert result["K"] == 4 and result["mode"] == "steered" and result["throughput"]["batch"] == 8
    # A policy folder works too (exported on the fly; base mode without --steering).
    assert lpds(["bench-latency", "--model", str(tmp_path / "policy"), "--calls", "20", "--batch", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mode"] == "base"


def test_cli_export_refuses_steering_of_another_decoder(tmp_path, capsys):
    policy, agent = make_models("flow", num_inference_steps=4)
    policy.save(tmp_path / "policy")
    other, _ = make_models("flow", seed=1, num_inference_steps=4)
    other.save(tmp_path / "other")
    save_steering_checkpoint(LPDSAgent(load_policy(tmp_path / "other"), agent.config), load_policy(tmp_path / "other"),
                             tmp_path / "steering.pt")
    assert lpds(["export", "--policy", str(tmp_path / "policy"), "--steering", str(tmp_path / "steering.pt"),
                 "--out", str(tmp_path / "onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "trained against decoder" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "onnx").exists()


def test_runtime_imports_without_torch_and_checks_opset(tmp_path):
    import subprocess
    import sys

    code = "import sys, lpds_ros.runtime; assert 'torch' not in sys.modules, 'runtime imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
    policy, _ = make_models("flow")
    with pytest.raises(LpdsError, match="opset 13: must be an integer >= 17"):
        export_policy(policy, tmp_path, opset=13)


def test_unfamiliar_denoiser_falls_back_to_the_plain_graph(tmp_path):
    """A policy whose denoiser is not the MLPDenoiser still exports (plain graph) and matches torch."""
    policy, _ = make_models("flow", seed=5, num_inference_steps=3)

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, obs_n, t):
            return self.inner(x, obs_n, t)

    policy.denoiser = Wrapped(policy.denoiser)
    manifest = export_policy(policy, tmp_path)
    assert manifest.export["decoder_graph"].startswith("plain; not step-specialised: the denoiser is a Wrapped")
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((2, OBS_DIM)).astype(np.float32)
    z = rng.standard_normal((2, policy.horizon, ACTION_DIM)).astype(np.float32)
    assert_parity(policy, OnnxPolicy(tmp_path).decode(obs, z), obs, z)
