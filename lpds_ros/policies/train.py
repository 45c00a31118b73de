"""Behaviour cloning of a frozen backbone: ``lpds pretrain``.

Data: every step t of every demo gives one pair (obs_t, actions[t : t + H]); past the end of an episode
the chunk repeats the episode's last action.  The normalisers are fitted on these pairs.

Optimisation: AdamW, linear warm-up then cosine decay of the learning rate to 0, gradient-norm
clipping, and an exponential moving average (EMA) of the weights; the saved model holds the EMA weights.
Every ``checkpoint_every`` epochs the whole training state (online + EMA weights, RNG state, optimizer
state in its own file) is written atomically under ``<out>/checkpoint/``; ``--resume`` reloads it and
continues the same run exactly (same batches, same noise, same result as an uninterrupted run).  A run
that finishes deletes its checkpoint, so the output folder is just the policy.

Output folder: ``config.json`` + ``model.safetensors`` (see ``lpds_ros.policies.load_policy``).
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save

from lpds_ros.config import ConfigError, config_from_dict, config_to_dict
from lpds_ros.errors import LpdsError
from lpds_ros.policies import GenerativePolicy, PolicyConfig, make_policy
from lpds_ros.policies.base import WEIGHTS_FILE
from lpds_ros.utils import atomic_write_bytes, atomic_write_text, sha256_file

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"


@dataclass
class TrainConfig:
    """Optimisation settings of ``lpds pretrain`` (they do not change what the trained decoder computes)."""

    epochs: int = 100
    """Passes over all (obs, chunk) pairs.  Keep it fixed across tasks; vary the number of demos instead."""
    batch_size: int = 256
    """Pairs per gradient step (the last batch of an epoch may be smaller)."""
    lr: float = 1e-3
    """Peak AdamW learning rate (after warm-up; cosine decay to 0 at the last step)."""
    weight_decay: float = 1e-6
    """AdamW decoupled weight decay."""
    warmup_steps: int = 100
    """Gradient steps of linear learning-rate warm-up from 0."""
    ema_decay: float = 0.995
    """Largest EMA decay; early on the decay is min(ema_decay, (1 + step) / (10 + step))."""
    grad_clip_norm: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping)."""
    checkpoint_every: int = 10
    """Write a resumable checkpoint every this many epochs (and after the last one)."""
    num_threads: int = 1
    """torch intra-op threads while training (0: torch's default).  One thread is the fastest on a busy
    shared CPU (measured here: 19 vs 1.8 steps/s with two threads on two loaded cores); resume with the same."""

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"TrainConfig.{field} = {getattr(self, field)!r}: {why}")

        for name in ("epochs", "batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(name, "must be a positive integer")
        for name in ("warmup_steps", "num_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise bad(name, "must be a non-negative integer")
        for name in ("lr", "weight_decay", "grad_clip_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise bad(name, "must be a finite number >= 0")
        if self.lr <= 0:
            raise bad("lr", "must be > 0")
        if not isinstance(self.ema_decay, (int, float)) or isinstance(self.ema_decay, bool) or not 0 <= self.ema_decay < 1:
            raise bad("ema_decay", "must be in [0, 1)")


# ------------------------------------------------------------------------------------------------ data
def make_chunks(episodes: Sequence[Any], horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Episodes (each with ``.obs`` [T, obs_dim] and ``.actions`` [T, d]) -> obs [N, obs_dim], chunks [N, H, d].

    Pair t of an episode is (obs[t], actions[t : t + H]), the last action repeated past the episode's end.
    """
    if len(episodes) == 0:
        raise LpdsError("no demonstrations to train on")
    obs_parts, chunk_parts = [], []
    obs_dim = action_dim = None
    for i, episode in enumerate(episodes):
        obs = np.asarray(episode.obs, dtype=np.float32)
        actions = np.asarray(episode.actions, dtype=np.float32)
        if obs.ndim != 2 or actions.ndim != 2 or len(obs) != len(actions) or len(actions) == 0:
            raise LpdsError(f"demo {i}: expected obs [T, obs_dim] and actions [T, d] with the same T >= 1, "
                            f"got {obs.shape} and {actions.shape}")
        if obs_dim is None:
            obs_dim, action_dim = obs.shape[1], actions.shape[1]
        if (obs.shape[1], actions.shape[1]) != (obs_dim, action_dim):
            raise LpdsError(f"demo {i}: obs/action sizes {obs.shape[1]}/{actions.shape[1]} differ from demo 0's {obs_dim}/{action_dim}")
        if not (np.isfinite(obs).all() and np.isfinite(actions).all()):
            raise LpdsError(f"demo {i}: contains NaN or inf")
        steps = len(actions)
        index = np.minimum(np.arange(steps)[:, None] + np.arange(horizon)[None, :], steps - 1)
        obs_parts.append(obs)
        chunk_parts.append(actions[index])
    return torch.from_numpy(np.concatenate(obs_parts)), torch.from_numpy(np.concatenate(chunk_parts))


def _fingerprint(obs: torch.Tensor, chunks: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in (obs, chunks):
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Learning rate before gradient step ``step`` (0-based): linear warm-up, then cosine decay to 0."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    decay_steps = max(total_steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / decay_steps, 1.0)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


# ------------------------------------------------------------------------------------------ checkpoint
def _write_checkpoint(directory: Path, state: dict[str, Any], policy: GenerativePolicy, ema: GenerativePolicy,
                      optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
    """Write this epoch's files, then point state.json at them (atomically), then drop older epochs' files."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"epoch-{state['epoch']:05d}"
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    tensors["rng.generator"] = generator.get_state()
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    atomic_write_bytes(directory / f"{stem}.safetensors", safetensors_save(tensors))
    atomic_write_bytes(directory / f"{stem}.optim.pt", buffer.getvalue())
    state = {**state, "weights_file": f"{stem}.safetensors", "optimizer_file": f"{stem}.optim.pt"}
    atomic_write_text(directory / STATE_FILE, json.dumps(state, indent=2) + "\n")
    for old in directory.glob("epoch-*"):
        if not old.name.startswith(stem):
            old.unlink(missing_ok=True)


def _read_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    state_path = directory / STATE_FILE
    if not state_path.is_file():
        raise LpdsError(f"{state_path}: no checkpoint to resume from (no interrupted run here; a finished run "
                        "removes its checkpoint)")
    try:
        state = json.loads(state_path.read_text())
        tensors = load_file(str(directory / state["weights_file"]))
        optimizer_state = torch.load(directory / state["optimizer_file"], weights_only=True)
    except (json.JSONDecodeError, KeyError, TypeError, OSError, SafetensorError, RuntimeError) as exc:
        raise LpdsError(f"{directory}: unreadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return state, tensors, optimizer_state


def _split(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


# -------------------------------------------------------------------------------------------- training
def pretrain(
    episodes: Sequence[Any],
    policy_config: PolicyConfig,
    train_config: TrainConfig | None = None,
    out: str | Path | None = None,
    *,
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> GenerativePolicy:
    """Train a policy on ``episodes`` and return its EMA copy, frozen (eval mode, no gradients).

    ``episodes``: objects with ``.obs`` [T, obs_dim] and ``.actions`` [T, d] (e.g. ``load_demos(...).episodes``);
    their sizes must match ``policy_config``.  With ``out``, checkpoints go to ``out/checkpoint/`` and the
    final model to ``out/`` (``config.json`` holds ``metadata`` plus the training record).  ``resume``
    continues the run checkpointed in ``out`` (configs, seed and data must be the same).
    ``callback(epoch, info)`` runs after each epoch (and its checkpoint); ``info`` has ``loss``, ``lr``, ``step``.
    """
    train_config = train_config or TrainConfig()
    threads_before = torch.get_num_threads()
    if train_config.num_threads:
        torch.set_num_threads(train_config.num_threads)
    try:
        return _pretrain(episodes, policy_config, train_config, None if out is None else Path(out), seed=seed,
                         metadata=metadata, resume=resume, progress=progress, callback=callback)
    finally:
        torch.set_num_threads(threads_before)


def _pretrain(episodes: Sequence[Any], policy_config: PolicyConfig, train_config: TrainConfig, out: Path | None, *,
              seed: int, metadata: dict[str, Any] | None, resume: bool, progress: bool,
              callback: Callable[[int, dict[str, float]], None] | None) -> GenerativePolicy:
    obs, chunks = make_chunks(episodes, policy_config.horizon)
    if (obs.shape[1], chunks.shape[2]) != (policy_config.obs_dim, policy_config.action_dim):
        raise LpdsError(f"demos have obs_dim {obs.shape[1]} and action_dim {chunks.shape[2]}, the policy config "
                        f"{policy_config.obs_dim} and {policy_config.action_dim}")
    fingerprint = _fingerprint(obs, chunks)
    num_pairs = len(obs)
    steps_per_epoch = math.ceil(num_pairs / train_config.batch_size)
    total_steps = steps_per_epoch * train_config.epochs

    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(seed)
        policy = make_policy(policy_config)
    policy.set_normalizer(obs, chunks)
    ema = copy.deepcopy(policy).requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    record = {
        "policy": config_to_dict(policy.config),
        "train": config_to_dict(train_config),
        "seed": seed,
        "data_fingerprint": fingerprint,
    }
    start_epoch, step, wall_before, last_loss = 0, 0, 0.0, float("nan")
    checkpoint_dir = out / CHECKPOINT_DIR if out is not None else None

    if resume:
        if checkpoint_dir is None:
            raise LpdsError("resume needs an output folder holding a checkpoint")
        state, tensors, optimizer_state = _read_checkpoint(checkpoint_dir)
        for key in ("policy", "train", "seed", "data_fingerprint"):
            if state.get(key) != record[key]:
                raise LpdsError(f"{checkpoint_dir}: the checkpoint's {key} differs from this run's; "
                                "resume with the same demos, flags and config (or train into a new --out)")
        policy.load_state_dict(_split(tensors, "model."))
        ema.load_state_dict(_split(tensors, "ema."))
        optimizer.load_state_dict(optimizer_state)
        generator.set_state(tensors["rng.generator"])
        start_epoch, step = state["epoch"], state["step"]
        wall_before, last_loss = state["wall_time_s"], state["loss"]
    elif checkpoint_dir is not None and ((checkpoint_dir / STATE_FILE).exists() or (out / WEIGHTS_FILE).exists()):
        raise LpdsError(f"{out}: already holds a policy or a training run; pass --resume to continue an "
                        "interrupted run, or choose another --out")

    from tqdm import tqdm

    t0 = time.perf_counter()
    bar = tqdm(range(start_epoch, train_config.epochs), initial=start_epoch, total=train_config.epochs,
               desc=f"pretrain {policy_config.backbone}", unit="epoch", disable=not progress, leave=False)
    params, ema_params = list(policy.parameters()), list(ema.parameters())
    policy.train()
    for epoch in bar:
        permutation = torch.randperm(num_pairs, generator=generator)
        loss_sum = 0.0
        for i in range(steps_per_epoch):
            index = permutation[i * train_config.batch_size:(i + 1) * train_config.batch_size]
            lr = lr_at(step, total_steps, train_config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = policy.loss(obs[index], chunks[index], generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train_config.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, train_config.grad_clip_norm)
            optimizer.step()
            decay = min(train_config.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, params, 1.0 - decay)
            step += 1
            loss_sum += loss.item()
        last_loss = loss_sum / steps_per_epoch
        bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.1e}")
        done = epoch + 1
        if checkpoint_dir is not None and (done % train_config.checkpoint_every == 0 or done == train_config.epochs):
            _write_checkpoint(checkpoint_dir, {**record, "epoch": done, "step": step, "loss": last_loss,
                                               "wall_time_s": wall_before + time.perf_counter() - t0},
                              policy, ema, optimizer, generator)
        if callback is not None:
            callback(done, {"loss": last_loss, "lr": lr, "step": step})
    bar.close()
    wall_time = wall_before + time.perf_counter() - t0

    ema.eval().requires_grad_(False)
    ema.metadata = {
        **(metadata or {}),
        "epochs": train_config.epochs,
        "steps": step,
        "num_pairs": num_pairs,
        "final_loss": last_loss,
        "wall_time_s": round(wall_time, 2),
        "seed": seed,
        "train_config": config_to_dict(train_config),
        "data_fingerprint": fingerprint,
        "torch_version": torch.__version__,
    }
    if out is not None:
        ema.save(out)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the run is complete: the folder is the policy
    return ema


# ------------------------------------------------------------------------------------------------- CLI
def read_overrides(path: str | Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A YAML file with optional ``policy:`` (PolicyConfig) and ``train:`` (TrainConfig) sections."""
    if path is None:
        return {}, {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or set(data) - {"policy", "train"}:
        raise ConfigError(f"{path}: expected only the sections 'policy' and 'train'")
    policy, train = data.get("policy") or {}, data.get("train") or {}
    if not isinstance(policy, dict) or not isinstance(train, dict):
        raise ConfigError(f"{path}: 'policy' and 'train' must be mappings")
    fixed = sorted({"obs_dim", "action_dim", "backbone"} & set(policy))
    if fixed:
        raise ConfigError(f"{path}: policy.{fixed[0]} is set by the demos / --backbone, not by the config file")
    return policy, train


def main(args: Any) -> int:
    """``lpds pretrain``: args.task, demos, backbone, out, config, max_demos, epochs, seed, resume."""
    from lpds_ros.data.hdf5 import load_demos

    policy_overrides, train_overrides = read_overrides(args.config)
    if args.max_demos is not None and args.max_demos < 1:
        raise LpdsError(f"--max-demos {args.max_demos}: must be >= 1")
    demos = load_demos(args.demos, max_demos=args.max_demos)
    episodes = demos.episodes
    if not episodes:
        raise LpdsError(f"{args.demos}: holds no demonstrations")
    obs_dim, action_dim = np.shape(episodes[0].obs)[1], np.shape(episodes[0].actions)[1]
    policy_config = config_from_dict(
        PolicyConfig,
        {**policy_overrides, "obs_dim": int(obs_dim), "action_dim": int(action_dim), "backbone": args.backbone},
        source=args.config or "policy config",
    )
    if args.epochs is not None:
        train_overrides = {**train_overrides, "epochs": args.epochs}
    train_config = config_from_dict(TrainConfig, train_overrides, source=args.config or "train config")
    metadata = {
        "task": args.task,
        "obs_keys": list(demos.obs_keys),
        "env_meta": _jsonable(getattr(demos, "env_meta", {})),
        "demos_file": str(args.demos),
        "demos_sha256": sha256_file(args.demos),
        "num_demos": len(episodes),
        "num_successful_demos": int(sum(bool(getattr(e, "success", False)) for e in episodes)),
    }
    policy = pretrain(episodes, policy_config, train_config, args.out, seed=args.seed, metadata=metadata,
                      resume=args.resume)
    info = policy.metadata
    print(f"pretrained {policy_config.backbone} on {len(episodes)} demos ({info['num_pairs']} pairs): "
          f"{info['epochs']} epochs, {info['steps']} steps, loss {info['final_loss']:.4f}, "
          f"{info['wall_time_s']:.0f} s -> {args.out} (sha256 {policy.checkpoint_sha256[:12]})")
    return 0


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    except (TypeError, ValueError):
        return str(value)
