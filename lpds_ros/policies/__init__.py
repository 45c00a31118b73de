"""Frozen generative backbones (diffusion, flow matching) behind one decoder interface.

    policy = load_policy("models/franka-lift-diffusion")     # frozen: eval mode, no gradients
    chunk = policy.decode(obs, z)     # obs [B, obs_dim] raw, z [B, H, d] ~ N(0, I) -> actions [B, H, d]

``make_policy(config)`` builds an untrained policy; ``lpds pretrain`` (``lpds_ros.policies.train``)
trains one and writes the folder ``load_policy`` reads: ``config.json`` + ``model.safetensors``.
"""
from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from lpds_ros.config import ConfigError, config_from_dict
from lpds_ros.errors import LpdsError
from lpds_ros.policies.base import (
    CONFIG_FILE,
    FORMAT,
    WEIGHTS_FILE,
    Decoder,
    GenerativePolicy,
)
from lpds_ros.policies.config import PolicyConfig
from lpds_ros.policies.diffusion import DiffusionPolicy
from lpds_ros.policies.flow import FlowPolicy
from lpds_ros.utils import read_json_file, sha256_file

__all__ = [
    "BACKBONES", "Decoder", "DiffusionPolicy", "FlowPolicy", "GenerativePolicy", "PolicyConfig",
    "load_policy", "make_policy",
]

# Backbone name -> class; the one place a name becomes a class.
BACKBONES: dict[str, type[GenerativePolicy]] = {
    "diffusion": DiffusionPolicy,
    "flow": FlowPolicy,
}


def make_policy(config: PolicyConfig) -> GenerativePolicy:
    """An untrained policy of ``config.backbone`` (normalisers at identity)."""
    if config.backbone not in BACKBONES:
        raise ConfigError(f"PolicyConfig.backbone = {config.backbone!r}: must be one of {sorted(BACKBONES)}")
    return BACKBONES[config.backbone](config)


def load_policy(directory: str | Path, device: str = "cpu") -> GenerativePolicy:
    """Load a policy folder written by ``GenerativePolicy.save`` as a frozen decoder.

    The result is in eval mode with ``requires_grad`` off everywhere; ``policy.checkpoint_sha256`` is
    the SHA-256 of its ``model.safetensors`` and ``policy.metadata`` the training record.
    Raises ``LpdsError`` (one line) on a missing folder/file, bad JSON or weights that do not fit the config.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise LpdsError(f"{directory}: policy folder not found (train one with `lpds pretrain`)")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise LpdsError(f"{path}: missing; a policy folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    document = read_json_file(config_path)
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(document.get("policy"), dict):
        raise LpdsError(f"{config_path}: not an lpds_ros policy config (expected \"format\": \"{FORMAT}\" and a \"policy\" mapping)")
    config = config_from_dict(PolicyConfig, document["policy"], source=str(config_path))
    policy = make_policy(config)
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise LpdsError(f"{weights_path}: not a readable safetensors file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    _check_weights(policy, tensors, weights_path, config_path)
    policy.load_state_dict(tensors, strict=True)
    policy.to(device)
    policy.eval()
    policy.requires_grad_(False)
    policy.checkpoint_sha256 = sha256_file(weights_path)
    training = document.get("training")
    policy.metadata = training if isinstance(training, dict) else {}
    return policy


def _check_weights(policy: GenerativePolicy, tensors: dict, weights_path: Path, config_path: Path) -> None:
    """Raise one ``LpdsError`` line naming what in the weights does not fit the config."""
    expected = {k: tuple(v.shape) for k, v in policy.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    problems = []
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing:
        problems.append(f"missing {len(missing)} tensor(s) e.g. {missing[0]}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensor(s) e.g. {unexpected[0]}")
    wrong = [k for k in sorted(set(expected) & set(found)) if expected[k] != found[k]]
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} shape mismatch(es) e.g. {k} {list(found[k])} vs {list(expected[k])} from the config")
    if problems:
        raise LpdsError(f"{weights_path}: weights do not match {config_path.name} ({'; '.join(problems)})")
