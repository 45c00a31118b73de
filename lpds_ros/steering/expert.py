"""``lpds expert``: train a per-step SAC expert on a task's own action space, keep the best checkpoint.

There is one SAC in this package: the steering baselines' (``dsrl-sac``: a tanh-Gaussian actor with an
auto-tuned entropy temperature, twin critics with Polyak targets, TD on replay).  An expert is that same
agent and the same online loop (``steering.loop.Trainer``: replay, UTD, evaluation, atomic checkpoints,
exact resume) run on an *identity decoder* Φ(s, w) = clip(w, −1, 1) with chunk H = H_exec = 1 and bound
b = 1: the "latent" is then the env action itself and ``dsrl-sac`` is plain SAC on the env
(critic Q(s, a), actor a = tanh(u), target entropy −1 per action dimension as in SAC).

Every evaluation (``eval_every`` env steps) rolls out the deterministic policy a = tanh(μ(s)) (the loop's
"mean latent" policy) and the stochastic one; the actor with the best deterministic return so far is
written to ``<out>/expert.safetensors`` + ``<out>/expert.json``.  ``load_expert`` reads it back for
``lpds collect --expert``.  ``<out>/checkpoint.pt`` resumes an interrupted run (``--resume``).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lpds_ros.errors import LpdsError
from lpds_ros.steering.config import DSRLConfig, FinetuneConfig
from lpds_ros.steering.loop import Trainer
from lpds_ros.utils import atomic_write_bytes, atomic_write_text

EXPERT_FILE = "expert.safetensors"
EXPERT_META = "expert.json"
EXPERT_FORMAT = "lpds_ros.expert"


class IdentityDecoder:
    """Φ(s, w) = clip(w, −1, 1) with H = H_exec = 1: turns the noise-space SAC into plain SAC on the env."""

    horizon = 1
    exec_horizon = 1
    num_inference_steps = 0

    def __init__(self, obs_dim: int, action_dim: int) -> None:
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        self.checkpoint_sha256 = f"identity-decoder-{self.obs_dim}x{self.action_dim}"

    def decode(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z.clamp(-1.0, 1.0)


@dataclass
class ExpertConfig:
    """The SAC expert's recipe (the same for every task; ``lpds expert`` flags override the budget)."""

    env_steps: int = 100_000
    learning_starts: int = 5_000
    """Random-action steps (N(0, I) clipped to [-1, 1]) before the first update."""
    utd: float = 1.0
    """Gradient updates per env step."""
    eval_every: int = 5_000
    eval_episodes: int = 5
    checkpoint_every: int = 10_000
    hidden_dims: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    lr: float = 3e-4
    batch_size: int = 256
    gamma: float = 0.99
    tau: float = 0.005
    target_entropy_per_dim: float = -1.0
    init_temperature: float = 1.0

    def agent_config(self) -> DSRLConfig:
        return DSRLConfig(hidden_dims=tuple(self.hidden_dims), activation=self.activation, lr=self.lr,
                          batch_size=self.batch_size, gamma=self.gamma, tau=self.tau, bound=1.0,
                          target_entropy_per_dim=self.target_entropy_per_dim,
                          init_temperature=self.init_temperature, noise_aliasing=False)


class ExpertTrainer(Trainer):
    """The steering loop, keeping the actor with the best deterministic evaluation return."""

    def __init__(self, config: FinetuneConfig, agent_config: DSRLConfig, decoder: IdentityDecoder) -> None:
        super().__init__(config, agent_config, decoder)
        self.best_return = -float("inf")
        self.best_step = -1

    def evaluate(self) -> dict[str, float]:
        point = super().evaluate()
        score = point["return_mean_latent"]
        if score > self.best_return:
            self.best_return, self.best_step = score, self.env_steps
            self.save_expert(point)
        return point

    def load_checkpoint(self, path: Path) -> None:
        super().load_checkpoint(path)
        for point in self.curve:  # the best actor is already on disk; recover its score
            if point["return_mean_latent"] > self.best_return:
                self.best_return, self.best_step = point["return_mean_latent"], point["env_steps"]

    def save_expert(self, point: dict[str, float]) -> None:
        from safetensors.torch import save as safetensors_save

        actor = self.agent.nets["actor"]
        tensors = {k: v.detach().cpu().contiguous() for k, v in actor.state_dict().items()}
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.out / EXPERT_FILE, safetensors_save(tensors))
        c, a = self.config, self.agent.config
        meta = {
            "format": EXPERT_FORMAT, "task": c.task, "obs_dim": self.decoder.obs_dim,
            "action_dim": self.decoder.action_dim, "hidden_dims": list(a.hidden_dims), "activation": a.activation,
            "env_steps": self.env_steps, "seed": c.seed,
            "eval_return": point["return_mean_latent"], "eval_return_stochastic": point["return"],
            "eval_success": point["success_mean_latent"], "eval_episodes": c.eval_episodes,
            "eval_length": point["length"],
            "policy": "a = tanh(mu(s)) of the SAC actor (deterministic)",
        }
        atomic_write_text(self.out / EXPERT_META, json.dumps(meta, indent=2) + "\n")


def train_expert(task: str, out: str | Path, env_steps: int | None = None, seed: int = 0,
                 config: ExpertConfig | None = None, resume: bool = False, progress: bool = True,
                 torch_threads: int = 1) -> dict[str, Any]:
    """Train the SAC expert of ``task`` into ``out``; returns the expert's metadata (best return, step)."""
    from lpds_ros.envs import make_env

    config = config or ExpertConfig()
    steps = env_steps if env_steps is not None else config.env_steps
    if steps < 1:
        raise LpdsError(f"--steps must be positive, got {steps}")
    out = Path(out)
    if (out / "checkpoint.pt").exists() and not resume:
        raise LpdsError(f"{out}: already holds an expert run; pass --resume to continue it, or choose another --out")
    env = make_env(task)
    decoder = IdentityDecoder(env.observation_space.shape[0], env.action_space.shape[0])
    env.close()
    fc = FinetuneConfig(task=task, policy=decoder.checkpoint_sha256, method="dsrl-sac", out=str(out),
                        env_steps=steps, seed=seed, num_envs=1, utd=config.utd,
                        learning_starts=min(config.learning_starts, steps), eval_every=min(config.eval_every, steps),
                        eval_episodes=config.eval_episodes, eval_envs=config.eval_episodes,
                        checkpoint_every=min(config.checkpoint_every, steps), entropy_states=2, entropy_latents=8,
                        torch_threads=torch_threads, progress=progress)
    trainer = ExpertTrainer(fc, config.agent_config(), decoder)
    result = trainer.run(resume=resume)
    meta = json.loads((out / EXPERT_META).read_text())
    meta["final_return"] = result["final"]["return_mean_latent"]
    meta["wall_s"] = result["timing"]["wall_this_session"]
    meta["run_env_steps"] = result["env_steps"]
    return meta


# ------------------------------------------------------------------------------------------- loading
class Expert:
    """A trained expert: ``act(obs [obs_dim] or [B, obs_dim]) -> tanh(μ(s))`` (numpy in, numpy out)."""

    def __init__(self, actor: torch.nn.Module, meta: dict[str, Any]) -> None:
        self.actor, self.meta = actor, meta
        self.obs_dim, self.action_dim = int(meta["obs_dim"]), int(meta["action_dim"])

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        single = x.dim() == 1
        a = self.actor.mode(x[None] if single else x).numpy()
        return a[0] if single else a


def load_expert(path: str | Path) -> Expert:
    """Read ``<path>/expert.json`` + ``expert.safetensors``; any problem is one ``LpdsError`` line."""
    from safetensors.torch import load_file

    from lpds_ros.steering.networks import TanhGaussian

    path = Path(path)
    meta_path, weights = path / EXPERT_META, path / EXPERT_FILE
    if not meta_path.is_file() or not weights.is_file():
        raise LpdsError(f"{path}: no expert here (expected {EXPERT_META} and {EXPERT_FILE}; train one with `lpds expert`)")
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != EXPERT_FORMAT:
            raise ValueError("wrong format")
        actor = TanhGaussian(int(meta["obs_dim"]), int(meta["action_dim"]), tuple(meta["hidden_dims"]),
                             meta["activation"], bound=1.0)
        actor.load_state_dict(load_file(str(weights)))
    except Exception as exc:  # noqa: BLE001 - any unreadable expert is a user error
        raise LpdsError(f"{path}: not a readable expert ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    actor.eval().requires_grad_(False)
    return Expert(actor, meta)


class ExpertDemonstrator:
    """The collect-time demonstrator: a = clip(tanh(μ(s)) + noise · N(0, I), −1, 1), seeded."""

    def __init__(self, expert: Expert, noise: float = 0.0, seed: int | None = None) -> None:
        self.expert, self.noise = expert, float(noise)
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        a = self.expert.act(obs)
        if self.noise > 0:
            a = a + self.noise * self.rng.standard_normal(a.shape)
        return np.clip(a, -1.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------- CLI
def main(args: argparse.Namespace) -> int:
    from lpds_ros.envs import task_spec

    task_spec(args.task)
    out = args.out or f"experts/{args.task}"
    config = ExpertConfig()
    overrides = {k: getattr(args, k) for k in ("learning_starts", "eval_every", "eval_episodes", "utd")
                 if getattr(args, k, None) is not None}
    for key, value in overrides.items():
        setattr(config, key, value)
    meta = train_expert(args.task, out, env_steps=args.steps, seed=args.seed, config=config, resume=args.resume,
                        progress=not args.no_progress, torch_threads=args.threads)
    print(f"expert {args.task} (seed {args.seed}): best deterministic return {meta['eval_return']:.1f} "
          f"(at {meta['env_steps']} of {meta['run_env_steps']} env steps, {meta['eval_episodes']} episodes), "
          f"final {meta['final_return']:.1f}; {meta['wall_s']:.0f} s this session; wrote {Path(out) / EXPERT_FILE}")
    return 0
