"""The frozen backbones: config validation, the decode contract, a bimodal fit, save/load."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lpds_ros.config import ConfigError, config_from_dict, load_config
from lpds_ros.errors import LpdsError
from lpds_ros.policies import (
    BACKBONES,
    Decoder,
    DiffusionPolicy,
    FlowPolicy,
    GenerativePolicy,
    PolicyConfig,
    load_policy,
    make_policy,
)
from lpds_ros.policies.config import BACKBONE_NAMES
from lpds_ros.policies.diffusion import alphas_cumprod, ddim_timesteps

SMALL = dict(hidden_dim=64, num_layers=2, cond_dim=32, time_embed_dim=16)


def small_policy(backbone: str, **overrides) -> GenerativePolicy:
    torch.manual_seed(0)
    return make_policy(PolicyConfig(obs_dim=5, action_dim=3, backbone=backbone, **{**SMALL, **overrides}))


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("field, value", [
    ("obs_dim", 0), ("horizon", -1), ("exec_horizon", 9), ("backbone", "gan"), ("beta_schedule", "sigmoid"),
    ("num_inference_steps", 0), ("num_inference_steps", 101), ("time_embed_dim", 7), ("hidden_dim", 1.5),
    ("prediction_type", "v_prediction"), ("timestep_spacing", "linspace"),
])
def test_config_rejects_bad_field_by_name(field, value):
    with pytest.raises(ConfigError, match=f"PolicyConfig.{field} "):
        PolicyConfig(**{"obs_dim": 4, "action_dim": 2, field: value})


def test_config_loads_from_yaml_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("obs_dim: 4\naction_dim: 2\nbackbone: flow\nnum_inference_steps: 4\n")
    config = load_config(path, PolicyConfig)
    assert (config.backbone, config.num_inference_steps, config.horizon, config.exec_horizon) == ("flow", 4, 8, 4)
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict(PolicyConfig, {"obs_dim": 4, "action_dim": 2, "hiden_dim": 8})


def test_registry_matches_names_and_classes():
    assert tuple(BACKBONES) == BACKBONE_NAMES
    for name, cls in BACKBONES.items():
        assert cls.backbone == name
    assert (DiffusionPolicy.default_inference_steps, FlowPolicy.default_inference_steps) == (5, 10)
    with pytest.raises(TypeError, match="backbone"):
        type("Broken", (GenerativePolicy,), {"default_inference_steps": 3})


def test_resolved_inference_steps_and_setter():
    policy = small_policy("diffusion")
    assert policy.num_inference_steps == policy.config.num_inference_steps == 5
    policy.num_inference_steps = 10
    assert policy.config.num_inference_steps == 10
    with pytest.raises(ConfigError, match="num_inference_steps"):
        policy.num_inference_steps = 1000
    assert small_policy("flow", num_inference_steps=4).num_inference_steps == 4


def test_ddim_schedule():
    abar = alphas_cumprod(100, "squaredcos_cap_v2")
    assert len(abar) == 100 and all(a > b for a, b in zip(abar, abar[1:])) and abar[-1] < 1e-3
    assert ddim_timesteps(100, 5) == [80, 60, 40, 20, 0] and ddim_timesteps(100, 3) == [66, 33, 0]
    assert ddim_timesteps(100, 100) == list(range(99, -1, -1))
    assert ddim_timesteps(100, 5, "trailing") == [99, 79, 59, 39, 19]
    assert ddim_timesteps(100, 3, "trailing") == [99, 66, 32]
    assert ddim_timesteps(100, 100, "trailing") == list(range(99, -1, -1))


X0_TRAILING = dict(prediction_type="sample", timestep_spacing="trailing")


def test_sample_prediction_trains_on_and_decodes_the_predicted_chunk():
    """x_0 prediction: the loss target is the clean chunk, and DDIM lands on what the network predicts."""
    policy = small_policy("diffusion", **X0_TRAILING)
    target = torch.rand(4, 24) * 1.6 - 0.8  # a normalised chunk inside the clip box

    class Oracle(torch.nn.Module):  # predicts ``target`` whatever x_t and t are
        def forward(self, x, obs_n, t):
            return target[: x.shape[0]]

    policy.denoiser = Oracle()
    obs, actions = torch.randn(4, 5), policy.unnormalize_actions(target.view(4, 8, 3))
    assert policy.loss(obs, actions).item() < 1e-10
    with torch.no_grad():
        for z in (torch.zeros(4, 8, 3), 3 * torch.randn(4, 8, 3)):
            assert torch.allclose(policy.decode(obs, z), actions, atol=1e-5)
    policy.config.prediction_type = "epsilon"  # the same network read as a noise prediction is not a fit
    assert policy.loss(obs, actions).item() > 0.1


# ------------------------------------------------------------------------------------------------ decode
@pytest.mark.parametrize("backbone", BACKBONE_NAMES)
def test_decode_is_deterministic_in_z(backbone):
    policy = small_policy(backbone).eval()
    assert isinstance(policy, Decoder)
    assert policy.latent_shape == (8, 3) and (policy.horizon, policy.exec_horizon) == (8, 4)
    obs = torch.randn(6, 5)
    z1, z2 = torch.randn(6, 8, 3), torch.randn(6, 8, 3)
    with torch.no_grad():
        torch.manual_seed(123)
        a = policy.decode(obs, z1)
        after = torch.rand(1)
        torch.manual_seed(123)
        b = policy.decode(obs, z1.clone())
        assert torch.equal(torch.rand(1), after), "decode must not draw from the global RNG"
        c = policy.decode(obs, z2)
    assert a.shape == (6, 8, 3)
    assert torch.equal(a, b)
    assert (a - c).abs().amax(dim=(1, 2)).min() > 1e-4  # every row changes with its latent


@pytest.mark.parametrize("backbone", BACKBONE_NAMES)
def test_decode_clips_to_action_box_and_checks_shapes(backbone):
    policy = small_policy(backbone)
    policy.action_scale.fill_(50.0)  # normalised chunks then map far outside [-1, 1]
    with torch.no_grad():
        a = policy.decode(torch.randn(16, 5), 3 * torch.randn(16, 8, 3))
    assert a.abs().max() <= 1.0 and (a.abs() == 1.0).any()
    with pytest.raises(ValueError, match="obs must have shape"):
        policy.decode(torch.randn(2, 4), torch.randn(2, 8, 3))
    with pytest.raises(ValueError, match="z must have shape"):
        policy.decode(torch.randn(2, 5), torch.randn(2, 4, 3))


# --------------------------------------------------------------------------------------- bimodal toy fit
@pytest.mark.parametrize("backbone, sampler", [("diffusion", {}), ("flow", {}), ("diffusion", X0_TRAILING)],
                         ids=["diffusion", "flow", "diffusion-x0-trailing"])
def test_fits_bimodal_toy_and_keeps_both_modes(backbone, sampler):
    g = torch.Generator().manual_seed(0)
    n = 4096
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    actions = 0.5 * sign[:, None, None] + 0.03 * torch.randn(n, 1, 2, generator=g)  # chunk H = 1, d = 2
    obs = torch.tensor([0.3, -0.2]).expand(n, 2).clone()
    torch.manual_seed(0)
    policy = make_policy(PolicyConfig(obs_dim=2, action_dim=2, backbone=backbone, horizon=1, exec_horizon=1,
                                      hidden_dim=128, num_layers=2, cond_dim=32, time_embed_dim=16, **sampler))
    policy.set_normalizer(obs, actions)
    optimizer = torch.optim.Adam(policy.parameters(), lr=2e-3)
    for _ in range(1000):
        index = torch.randint(0, n, (256,), generator=g)
        loss = policy.loss(obs[index], actions[index], generator=g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    z = torch.randn(2000, 1, 2, generator=g)
    nudge = torch.nn.functional.normalize(torch.randn(2000, 2, generator=g), dim=1).view(2000, 1, 2)
    with torch.no_grad():
        decoded = policy.decode(obs[:1].expand(2000, 2), z)
        nudged = policy.decode(obs[:1].expand(2000, 2), z + 0.01 * nudge)
    # A smooth latent -> action map (what steering needs): no jumps between modes inside tiny latent balls.
    # Measured: diffusion 12, flow 22, diffusion-x0-trailing 7 (epsilon prediction from t = 99: 130).
    local_lipschitz = (nudged - decoded).flatten(1).norm(dim=1) / 0.01
    assert local_lipschitz.max() < 50, local_lipschitz.max()
    centre = decoded.mean(dim=(1, 2))
    upper, lower, between = (centre > 0.3).float().mean(), (centre < -0.3).float().mean(), (centre.abs() < 0.3).float().mean()
    assert upper >= 0.2 and lower >= 0.2, (upper, lower)
    assert between <= 0.1, between
    assert (decoded[:, 0, 0] - decoded[:, 0, 1]).abs().median() < 0.1  # the two dims move together


# -------------------------------------------------------------------------------------------- save/load
@pytest.mark.parametrize("backbone", BACKBONE_NAMES)
def test_save_load_round_trip(tmp_path, backbone):
    policy = small_policy(backbone)
    policy.set_normalizer(torch.randn(100, 5) * 3 + 1, torch.rand(100, 8, 3) - 0.5)
    policy.save(tmp_path / "p", metadata={"task": "toy", "obs_keys": ["a", "b"]})
    loaded = load_policy(tmp_path / "p")
    assert type(loaded) is type(policy) and loaded.config == policy.config
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert loaded.checkpoint_sha256 == policy.checkpoint_sha256 and len(loaded.checkpoint_sha256) == 64
    assert loaded.metadata["obs_keys"] == ["a", "b"]
    assert torch.equal(loaded.obs_std, policy.obs_std)
    obs, z = torch.randn(4, 5), torch.randn(4, 8, 3)
    with torch.no_grad():
        assert torch.equal(loaded.decode(obs, z), policy.decode(obs, z))
    document = json.loads((tmp_path / "p" / "config.json").read_text())
    assert document["policy"]["num_inference_steps"] == policy.num_inference_steps


def _one_line_error(path) -> str:
    with pytest.raises(LpdsError) as info:
        load_policy(path)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_load_errors_are_one_line(tmp_path):
    assert "not found" in _one_line_error(tmp_path / "nowhere")
    folder = tmp_path / "p"
    small_policy("flow").save(folder)
    config_text = (folder / "config.json").read_text()

    (folder / "model.safetensors").rename(folder / "moved")
    assert "model.safetensors: missing" in _one_line_error(folder)
    (folder / "moved").rename(folder / "model.safetensors")

    (folder / "config.json").write_text("{not json")
    assert "not valid JSON" in _one_line_error(folder)
    (folder / "config.json").write_text(json.dumps({"something": "else"}))
    assert "not an lpds_ros policy config" in _one_line_error(folder)

    document = json.loads(config_text)
    document["policy"]["hidden_dim"] = 32
    (folder / "config.json").write_text(json.dumps(document))
    assert "do not match config.json" in _one_line_error(folder)
    document["policy"]["hidden_dim"] = 64
    document["policy"]["horizon"] = 0
    (folder / "config.json").write_text(json.dumps(document))
    assert "PolicyConfig.horizon" in _one_line_error(folder)

    (folder / "config.json").write_text(config_text)
    (folder / "model.safetensors").write_bytes(b"\x00" * 5)
    assert "safetensors" in _one_line_error(folder)


# ------------------------------------------------------------------------------------------------- ONNX
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript-based exporter (no onnxscript here)
@pytest.mark.parametrize("backbone, sampler", [("diffusion", {}), ("flow", {}), ("diffusion", X0_TRAILING)],
                         ids=["diffusion", "flow", "diffusion-x0-trailing"])
def test_decoder_exports_to_onnx(tmp_path, backbone, sampler):
    ort = pytest.importorskip("onnxruntime")
    policy = small_policy(backbone, **sampler).eval()
    path = tmp_path / "decoder.onnx"
    torch.onnx.export(policy, (torch.randn(2, 5), torch.randn(2, 8, 3)), str(path), input_names=["obs", "z"],
                      output_names=["actions"], dynamic_axes={"obs": {0: "B"}, "z": {0: "B"}, "actions": {0: "B"}},
                      dynamo=False)
    obs, z = torch.randn(7, 5), torch.randn(7, 8, 3)
    (onnx_out,) = ort.InferenceSession(str(path)).run(None, {"obs": obs.numpy(), "z": z.numpy()})
    with torch.no_grad():
        assert abs(onnx_out - policy.decode(obs, z).numpy()).max() < 1e-5


SHIPPED = sorted(p for p in (Path(__file__).resolve().parents[1] / "models").iterdir() if (p / "config.json").is_file())


@pytest.mark.parametrize("model", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_model_loads_and_fits_its_task(model):
    """models/<task>-<backbone>: the task and backbone its name says, the task's obs/action sizes, and one
    decode of the env's first observation inside the action box."""
    from lpds_ros.envs import make_env

    policy = load_policy(model)
    task = json.loads((model / "config.json").read_text())["training"]["task"]
    assert model.name == f"{task}-{policy.config.backbone}"
    env = make_env(task)
    try:
        obs, _ = env.reset(seed=0)
        assert (policy.obs_dim, policy.action_dim) == (obs.shape[0], env.action_space.shape[0])
        chunk = policy.decode(torch.as_tensor(obs[None]), torch.zeros(1, policy.horizon, policy.action_dim))
    finally:
        env.close()
    assert torch.isfinite(chunk).all() and chunk.abs().max() <= 1.0


def test_shipped_pretrain_configs_build_a_policy_config():
    """config/pretrain/*.yaml: every file is a valid `lpds pretrain --config` (the Adroit recipe uses one)."""
    from lpds_ros.policies.train import TrainConfig, read_overrides

    files = sorted((Path(__file__).resolve().parents[1] / "config" / "pretrain").glob("*.yaml"))
    assert files
    for path in files:
        policy, train = read_overrides(str(path))
        config = config_from_dict(PolicyConfig, {**policy, "obs_dim": 4, "action_dim": 2}, source=str(path))
        config_from_dict(TrainConfig, train, source=str(path))
        if path.stem == "diffusion_x0_trailing":
            assert (config.prediction_type, config.timestep_spacing) == ("sample", "trailing")
