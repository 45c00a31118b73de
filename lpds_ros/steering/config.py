"""Configs of the steering methods and of the online loop: one documented dataclass each.

Every field is documented where it is declared; ``__post_init__`` rejects a bad value by naming the
field.  ``AgentConfig`` holds what all learning methods share (networks, optimiser, TD); each method
adds its own fields in one subclass.  The trust-region bound δ is per task (``TASK_DELTA``) because it
bounds a sum over all H·d latent dimensions; ``FinetuneConfig.delta`` overrides it for one run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from lpds_ros.config import ConfigError

DEFAULT_DELTA = 0.35
"""δ for a task without an entry in ``TASK_DELTA`` (the paper's general default)."""

TASK_DELTA: dict[str, float] = {
    # Our own Franka scenes (H·d = 8·4 = 32 latent dimensions, so δ/(H·d) ≈ 0.094 per dimension, a shift of
    # ~0.3σ).  The paper's 0.35 (0.011 per dimension here) barely moved franka-lift: +7 points at 30k steps
    # against +11 with δ = 3, whose action entropy stayed at the base's (docs/results.md).
    "franka-lift": 3.0,
    "franka-pickplace": 3.0,
    "franka-insert": 3.0,
    # The paper's values where the task matches one it reports.  Gym/Adroit tasks (lpds_ros.envs.gym_tasks)
    # with H = 8: H·d = 24 (hopper), 48 (walker2d, halfcheetah), 192 (adroit-pen), 208-240 (other Adroit).
    "hopper": 0.5,
    "walker2d": 0.35,
    "halfcheetah": 0.35,
    "pen": 0.66,
    "adroit-pen": 0.66,
}
"""δ: the bound on E_s‖Δ_θ(s)‖² (a sum over the H·d latent dimensions) per task."""


def task_delta(task: str) -> float:
    """δ for ``task``: its ``TASK_DELTA`` entry (matched on the name, or its prefix before '-'), else the default."""
    key = task.lower()
    if key in TASK_DELTA:
        return TASK_DELTA[key]
    return TASK_DELTA.get(key.split("-")[0], DEFAULT_DELTA)


ACTOR_GRADIENTS = ("noise_critic", "decoder")
"""``LPDSConfig.actor_gradient``'s values."""


def _bad(config: object, field: str, why: str) -> ConfigError:
    return ConfigError(f"{type(config).__name__}.{field} = {getattr(config, field)!r}: {why}")


def _positive(config: object, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise _bad(config, name, "must be a positive (finite) number")


@dataclass
class AgentConfig:
    """What every learning method shares: networks, optimiser and the TD backup."""

    hidden_dims: tuple[int, ...] = (256, 256, 256)
    """Widths of the hidden layers of every MLP (actor, critics); each is Linear → LayerNorm → activation."""
    activation: str = "tanh"
    """Hidden activation of every MLP: tanh (DSRL's choice), relu, gelu or silu."""
    lr: float = 3e-4
    """Adam learning rate of every network."""
    batch_size: int = 256
    """Chunk transitions per gradient update."""
    gamma: float = 0.99
    """Per-env-step discount; a chunk of k executed steps is discounted by γ^k."""
    tau: float = 0.005
    """Polyak rate of the target critics (target ← (1 − τ) target + τ online, once per update)."""
    distill_noise: str = "replay"
    """Where the noise critic's prior samples ε come from.  ``replay``: the (ε, Φ(s, ε)) pair decoded beside
    each acting step and stored with the transition (exact, because Φ is frozen and deterministic; saves one
    decode per update).  ``fresh``: a new ε ~ N(0, I) and a decode of Φ(s, ε) every update."""
    reward_scale: float = 1.0
    """c: the critics learn Q of the scaled reward c·r.  The replay buffer and the logged episode returns stay raw;
    the critic metrics (``critic/q_mean``, ``critic/td_loss``, ``actor/q``) are in scaled units.
    Why: Adam moves a network's output by ~lr per update, so a critic whose targets are in the thousands
    (Adroit's dense rewards: a hammer success returns ~17,000) is still far below them after 30k env steps
    (Q^A's mean 243 at 6k updates on adroit-hammer).  The constrained problems (LP-DS's bound, SAC's entropy
    target) keep their optimum; only the scale the actor, α and the entropy temperature work on changes."""
    n_step: int = 1
    """Chunk transitions summed into one TD target, along the same env's replayed decisions:
    y = Σ_{j<n} (Π_{i<j} γ^{k_i}) c·r_j + (Π_{j<n} γ^{k_j}) (1 − done) V(s_n), stopped early at an episode's end.
    1 is DESIGN §3's one-chunk backup.  Why: with τ = 0.005 a sparse success needs ~200 updates per decision it
    travels back through the target network, and a franka-lift episode holds ~15–25 decisions; n decisions per
    backup cut that n-fold.  Uncorrected for the policy that acted (as in Rainbow and DrQ-v2): the later
    decisions' rewards are the behaviour's, a small bias while the steering stays near the prior.  Measured on
    franka-lift / diffusion, LP-DS, 5 seeds: n = 3 ends at 48.0% against 56.4% at n = 1 (docs/results.md)."""

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(self.hidden_dims)
        if not self.hidden_dims or any(not isinstance(h, int) or isinstance(h, bool) or h < 1 for h in self.hidden_dims):
            raise _bad(self, "hidden_dims", "must be a non-empty list of positive integers")
        from lpds_ros.steering.networks import ACTIVATIONS

        if self.activation not in ACTIVATIONS:
            raise _bad(self, "activation", f"must be one of {sorted(ACTIVATIONS)}")
        _positive(self, "lr", "batch_size", "reward_scale", "n_step")
        for name in ("batch_size", "n_step"):
            if not isinstance(getattr(self, name), int):
                raise _bad(self, name, "must be an integer")
        if not 0.0 <= self.gamma <= 1.0:
            raise _bad(self, "gamma", "must be in [0, 1]")
        if not 0.0 < self.tau <= 1.0:
            raise _bad(self, "tau", "must be in (0, 1]")
        if self.distill_noise not in ("replay", "fresh"):
            raise _bad(self, "distill_noise", "must be 'replay' or 'fresh'")


@dataclass
class BaseConfig(AgentConfig):
    """``base``: the frozen policy itself, w = ε ~ N(0, I).  Nothing is learned; the fields are unused."""


@dataclass
class LPDSConfig(AgentConfig):
    """``lpds`` (and ``lpds-nolagrange``, ``lpds-gauss``): w = ε + Δ_θ(s) under E‖Δ_θ(s)‖² ≤ δ with a learned
    multiplier α."""

    delta: float | None = None
    """δ, the bound on E_s‖Δ_θ(s)‖² (summed over H·d dimensions).  ``None``: the task's ``TASK_DELTA``."""
    dual_lr: float = 1.0
    """η_α of the projected dual ascent α ← max(0, α + η_α (E‖Δ‖² − δ)), applied once per update."""
    dual_kp: float = 10.0
    """k_p: the actor step uses max(0, α + k_p (E‖Δ‖² − δ)), a proportional term on top of the dual variable
    (PI-Lagrangian, Stooke et al. 2020).  0 is plain dual ascent, which oscillates around the bound (on the
    one-step toy E‖Δ‖² swung between ~0 and 2δ); k_p = 10 held it at δ ± 5%."""
    alpha_init: float = 0.0
    """α at step 0 (the trust region is slack at initialisation, where Δ = 0)."""
    lagrange: bool = True
    """False is the ``lpds-nolagrange`` ablation: α fixed at 0, no bound, no dual step."""
    actor_delay: int = 0
    """Critic warm-up: the first ``actor_delay`` updates train Q^A and Q^W only (Δ_θ stays 0, no dual step).
    0 is DESIGN §3's schedule, whose first evaluation after warm-up dipped ~10 points on franka-lift while the
    actor followed a still-poor critic (docs/results.md)."""
    actor_gradient: str = "noise_critic"
    """Where the actor's gradient in w comes from.  ``noise_critic``: ∇_w Q^W(s, w), the distilled noise critic
    (DESIGN §3; the decoder is never differentiated).  ``decoder``: ∇_w min_j Q^A_j(s, Φ(s, w)), back-propagated
    through the frozen decoder's K steps (Φ's weights get no gradient and stay frozen); Q^W is then not
    needed and not trained.  Why: Q^W learns Q^A(s, Φ(s, ε)) by regression on one prior ε per replayed state,
    so its slope in the H·d latent dimensions is only as good as that fit; Q^A's slope through Φ is exact
    for the action critic.  It costs a differentiable decode per update (2-3× the update's time).  Measured on
    hopper / diffusion (2 seeds, docs/gym_adroit.md): worse than ``noise_critic`` (610 against 675), because the
    exact slope also finds where Q^A over-estimates; kept as an ablation."""
    distill_executed: bool = False
    """Also regress Q^W on the replayed executed pairs (w, Φ(s, w)), w = ε + Δ_θ'(s) of the Δ that acted, beside
    the prior pairs (each update's distillation batch doubles; no extra decode).  Why: the actor climbs Q^W at
    ε + Δ_θ(s), where prior-only distillation never checks it; on hopper / diffusion Q^W valued the shift at
    1.7–2.5× what Q^A did.  With this on, 1.1–1.2×, but the return did not follow (638 against 656, 5 seeds;
    docs/gym_adroit.md), so it stays off.  ``benchmarks/noise_critic_check.py`` reads a run's Q^W this way."""
    learn_scale: bool = False
    """The Gaussian variant (``lpds-gauss``, DESIGN §3's optional one): w = μ_θ(s) + σ_θ(s) ⊙ ε with a learned
    per-dimension scale, under E_s[2·KL(N(μ, σ²) ‖ N(0, I))] = E_s[‖μ‖² + Σ(σ² − 1 − 2 log σ)] ≤ δ.  At σ = 1 the
    divergence is ‖Δ‖², so δ keeps its meaning.  Why: a narrower latent alone is worth points (franka-lift's base
    succeeds 50% at ε and 58% at 0.79·ε, the uniform σ that δ = 3 affords; docs/results.md); plain LP-DS
    keeps the prior's spread by construction and cannot take that gain."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.delta is not None:
            _positive(self, "delta")
        _positive(self, "dual_lr")
        if self.dual_kp < 0:
            raise _bad(self, "dual_kp", "must be >= 0")
        if self.alpha_init < 0:
            raise _bad(self, "alpha_init", "must be >= 0")
        if not isinstance(self.lagrange, bool):
            raise _bad(self, "lagrange", "must be true or false")
        if not isinstance(self.actor_delay, int) or isinstance(self.actor_delay, bool) or self.actor_delay < 0:
            raise _bad(self, "actor_delay", "must be a non-negative integer")
        if self.actor_gradient not in ACTOR_GRADIENTS:
            raise _bad(self, "actor_gradient", f"must be one of {', '.join(ACTOR_GRADIENTS)}")
        if not isinstance(self.distill_executed, bool):
            raise _bad(self, "distill_executed", "must be true or false")
        if self.distill_executed and self.actor_gradient != "noise_critic":
            raise _bad(self, "distill_executed", "needs the noise critic (actor_gradient: noise_critic)")
        if not isinstance(self.learn_scale, bool):
            raise _bad(self, "learn_scale", "must be true or false")
        if self.learn_scale and not self.lagrange:
            raise _bad(self, "learn_scale", "needs the trust region (lagrange: true): unbounded, σ would collapse")


@dataclass
class SACConfig(AgentConfig):
    """The SAC-style baselines: a tanh-bounded Gaussian actor with an auto-tuned entropy temperature."""

    bound: float = 1.5
    """b: the actor's output is b · tanh(u).  DSRL: the latent bound (1.5–2.5 on robomimic);
    residual: β, the largest residual per action dimension."""
    target_entropy_per_dim: float = 0.0
    """Target entropy of tanh(u) per output dimension (total = this × dims).  DSRL's setting is 0."""
    init_temperature: float = 1.0
    """Entropy temperature at step 0 (SB3's "auto" starts at 1.0); tuned towards the target afterwards."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "bound", "init_temperature")


@dataclass
class DSRLConfig(SACConfig):
    """``dsrl`` (DSRL-NA: Q^A + distilled Q^W, latent actor on Q^W) and ``dsrl-sac`` (plain SAC on Q(s, w))."""

    noise_aliasing: bool = True
    """True: DSRL-NA (action critic Q^A by chunk TD, noise critic Q^W distilled from it).  False: DSRL-SAC,
    one twin critic Q(s, w) on the latent trained by TD, as if the decoder were part of the env."""


@dataclass
class ResidualConfig(SACConfig):
    """``residual``: a = Φ(s, ε) + β · tanh(u), u ~ π(s, a_base), SAC on the bounded residual."""

    bound: float = 0.1
    """β: the largest residual per action dimension (actions live in [-1, 1])."""
    target_entropy_per_dim: float = -1.0
    """SAC's usual −1 per residual dimension."""
    zero_init_mean: bool = False
    """Start the actor's mean at exactly 0, so the mean-residual policy is the base policy at step 0 (as LP-DS's
    zero-initialised Δ_θ is).  Off by default: every residual number so far ran without it, and on Adroit
    relocate the random initial mean (up to β per dimension) took the step-0 success from 30% to 0%."""


@dataclass
class FinetuneConfig:
    """The online loop (``lpds finetune``); budgets count env steps, never chunks."""

    task: str
    """Task name, e.g. franka-lift."""
    policy: str
    """Folder of the frozen base policy (``lpds pretrain``'s output)."""
    method: str = "lpds"
    """Steering method: a name of ``lpds_ros.steering.registry.METHODS``."""
    out: str = "runs/finetune"
    """Run folder: JSONL log, TensorBoard events, checkpoint, result.json."""
    env_steps: int = 30_000
    """Budget in env steps (each executed action of a chunk is one step)."""
    seed: int = 0
    """Seeds networks, noise, replay sampling and the training episodes' resets."""
    num_envs: int = 8
    """Training envs stepped in-process; their decisions are decoded in one batch."""
    utd: float = 1.0
    """Gradient updates per chunk transition (a decision of one env).  DSRL's robomimic setting is 20–30."""
    learning_starts: int = 2_000
    """Env steps collected with the prior latent (the base policy) before the first update."""
    buffer_size: int = 0
    """Replay capacity in chunk transitions; 0 means the budget's chunk count (env steps / executed steps, plus one
    per env).  Chunks cut short by an episode's end make a run add a little more than that (43 rows, 0.6%, on a
    30k hopper run), and the ring buffer then drops its oldest rows, as any FIFO replay does."""
    eval_every: int = 5_000
    """Env steps between evaluations (one also runs at step 0 and at the end)."""
    eval_episodes: int = 20
    """Episodes per evaluation (each of the stochastic and the mean-latent policy)."""
    eval_envs: int = 10
    """Parallel envs in an evaluation."""
    eval_seed: int = 1_000_000
    """Evaluation episode i of run seed s resets with eval_seed + 1000·s + i (the same for every method)."""
    checkpoint_every: int = 10_000
    """Env steps between checkpoints (one is also written at the end)."""
    entropy_states: int = 16
    """States (from a base-policy rollout with a fixed seed) at which the action entropy is estimated."""
    entropy_latents: int = 256
    """Latents decoded per state for the k-NN entropy estimate (DESIGN §6: >= 256)."""
    knn_k: int = 3
    """k of the Kozachenko–Leonenko estimator."""
    delta: float | None = None
    """Overrides the task's δ for lpds (None: ``TASK_DELTA``/agent config)."""
    torch_threads: int = 1
    """torch intra-op threads of this run (1 per run when bench runs several in parallel)."""
    device: str = "cpu"
    """torch device of the decoder and the steering networks (``cpu``, ``cuda``); envs and replay stay on CPU."""
    progress: bool = True
    """Show a tqdm bar."""

    def __post_init__(self) -> None:
        for name in ("env_steps", "num_envs", "eval_episodes", "eval_envs", "eval_every", "checkpoint_every",
                     "entropy_states", "entropy_latents", "knn_k", "torch_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _bad(self, name, "must be a positive integer")
        for name in ("learning_starts", "buffer_size", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _bad(self, name, "must be a non-negative integer")
        if isinstance(self.utd, bool) or not isinstance(self.utd, (int, float)) or self.utd < 0:
            raise _bad(self, "utd", "must be a non-negative number")
        if self.delta is not None:
            _positive(self, "delta")
        if self.entropy_latents < self.knn_k + 1:
            raise _bad(self, "entropy_latents", f"must exceed knn_k ({self.knn_k})")
        from lpds_ros.steering.registry import METHODS

        if self.method not in METHODS:
            raise _bad(self, "method", f"unknown; valid methods: {', '.join(METHODS)}")


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]
