"""Export-time rewrites of a frozen decoder: the same function, a shorter ONNX graph.

Only ``lpds_ros.runtime.export`` uses this module, on a private deep copy of the policy; the policy a
user trains and evaluates is never changed.  Two rewrites, both exact up to float32 rounding (the
export checks parity against the untouched policy afterwards):

1. ``ExportMish`` replaces ``nn.Mish``.  ONNX has no fused Mish kernel on the CPU, and the exporter's
   ``x * tanh(softplus(x))`` spends most of its time in a scalar Softplus.  With q = sigmoid(-x),
   tanh(softplus(x)) = (1 - q^2) / (1 + q^2), which uses only vectorised element-wise kernels.

2. ``StepSpecializedDenoiser`` replaces the ``MLPDenoiser`` for one decode of K steps at known times.
   In the K-step loop everything that depends on the observation and the time only -- the
   conditioning MLP and the conditioning half of every block's input layer, i.e. the
   ``[x, c] @ W = x @ W_x + c @ W_c`` split -- is computed for all K steps at once, in one batched
   matrix product at the first step.  What stays inside the loop is the part that depends on the
   chunk being denoised.  At batch 1 the decode is bound by reading weights from memory, so reading
   W_c once instead of K times, and dropping the per-step concatenations, time embeddings and
   conditioning layers, is what makes the graph faster.

The step times are recorded by running the policy's own ``decode`` in eager mode (a forward hook on its
denoiser) and must be the same for every input; the sampler itself (DDIM or Euler, the policy's code)
is traced unchanged, so a new backbone needs nothing here as long as its loop calls the denoiser K
times with the same normalised observation.  Anything unexpected raises ``SpecializationError`` and
the exporter falls back to the plain graph (rewrite 1 only).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpds_ros.policies.networks import MLPDenoiser, ResidualBlock


class SpecializationError(RuntimeError):
    """The decoder does not have the structure ``StepSpecializedDenoiser`` rewrites."""


def mish(x: Tensor) -> Tensor:
    """x * tanh(softplus(x)) written with a sigmoid: q = sigmoid(-x), tanh(softplus(x)) = (1 - q^2) / (1 + q^2)."""
    q2 = torch.sigmoid(-x).square()
    return x * (1.0 - q2) / (1.0 + q2)


class ExportMish(nn.Module):
    """Drop-in for ``nn.Mish`` with an export-friendly formula (see ``mish``)."""

    def forward(self, x: Tensor) -> Tensor:
        return mish(x)


def replace_mish(module: nn.Module) -> int:
    """Replace every ``nn.Mish`` under ``module`` (in place) by ``ExportMish``; returns how many."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Mish):
                setattr(parent, name, ExportMish())
                count += 1
    return count


@torch.no_grad()
def record_step_times(policy: nn.Module, trials: int = 2) -> list[float]:
    """The time value the sampler passes to the denoiser at each of its K calls in one ``decode``.

    Decodes ``trials`` different random batches and checks that the denoiser is called
    ``policy.num_inference_steps`` times, with one time per call shared by the whole batch and by every
    input.  Raises ``SpecializationError`` otherwise.
    """
    calls: list[Tensor | None] = []

    def record(_module, args, _out) -> None:  # the samplers call denoiser(x, obs_n, t) positionally
        calls.append(args[2].detach().clone() if len(args) == 3 and isinstance(args[2], Tensor) else None)

    handle = policy.denoiser.register_forward_hook(record)
    generator = torch.Generator().manual_seed(1234)
    runs = []
    try:
        for _ in range(trials):
            calls.clear()
            obs = torch.randn(3, policy.obs_dim, generator=generator) * 3.0
            z = torch.randn(3, policy.horizon, policy.action_dim, generator=generator)
            policy.decode(obs, z)
            runs.append([None if t is None else t.to(torch.float64) for t in calls])
    finally:
        handle.remove()
    k = policy.num_inference_steps
    first = runs[0]
    if len(first) != k:
        raise SpecializationError(f"the sampler called the denoiser {len(first)} times, expected K = {k}")
    for t in first:
        if t is None:
            raise SpecializationError("the sampler does not call the denoiser as denoiser(x, obs_n, t)")
        if t.dim() != 1 or not bool((t == t[0]).all()):
            raise SpecializationError("the sampler passes a per-sample time to the denoiser")
    for other in runs[1:]:
        if len(other) != k or any(b is None or not torch.equal(a, b) for a, b in zip(first, other)):
            raise SpecializationError("the sampler's step times depend on its input")
    return [float(t[0]) for t in first]


class StepSpecializedDenoiser(nn.Module):
    """``MLPDenoiser`` for exactly one decode of K calls at the recorded ``times``.  Export only.

    Call ``begin_decode()`` before each decode.  At call k the module returns exactly what the original
    denoiser returns for (x, obs_n, times[k]); the ``t`` argument is ignored.
    """

    def __init__(self, denoiser: MLPDenoiser, times: list[float]) -> None:
        super().__init__()
        d = denoiser
        cond_in, cond_act, cond_out = _unpack_cond(d)
        if not isinstance(d.inp, nn.Linear) or not isinstance(d.out, nn.Linear) or not isinstance(d.out_norm, nn.LayerNorm):
            raise SpecializationError("unexpected input/output layers in the denoiser")
        for block in d.blocks:
            if type(block) is not ResidualBlock or not isinstance(block.act, (nn.Mish, ExportMish)):
                raise SpecializationError("unexpected residual block in the denoiser")
        hidden = d.inp.out_features
        cond_dim = cond_out.out_features
        time_dim = 2 * d.time_embed.freqs.numel()
        obs_dim = cond_in.in_features - time_dim
        sample_dim = d.inp.in_features - cond_dim
        if sample_dim <= 0 or obs_dim <= 0 or any(b.linear.in_features != hidden + cond_dim for b in d.blocks):
            raise SpecializationError("denoiser layer sizes do not fit [x, c] / [h, c] inputs")
        self.num_steps = len(times)
        self.hidden = hidden
        self.num_blocks = len(d.blocks)
        with torch.no_grad():
            temb = d.time_embed(torch.tensor(times, dtype=torch.float32))  # [K, time_dim]
            w1 = cond_in.weight  # [cond, obs_dim + time_dim]: the input is cat([obs_n, temb])
            # First conditioning layer, split: obs_n @ W_obs^T + (temb_k @ W_t^T + b)_k.
            self.register_buffer("cond_w_obs", w1[:, :obs_dim].clone())
            self.register_buffer("cond_time_bias", (temb @ w1[:, obs_dim:].T + cond_in.bias).clone())  # [K, cond]
            self.register_buffer("cond_w_out", cond_out.weight.clone())
            self.register_buffer("cond_b_out", cond_out.bias.clone())
            # The conditioning halves of the input layer and of every block, stacked: [(1 + L) * hidden, cond].
            layers = [d.inp] + [b.linear for b in d.blocks]
            halves = [d.inp.weight[:, sample_dim:]] + [b.linear.weight[:, hidden:] for b in d.blocks]
            self.register_buffer("cond_proj_w", torch.cat(halves, dim=0).clone())
            self.register_buffer("cond_proj_b", torch.cat([layer.bias for layer in layers], dim=0).clone())
            # The halves that see the chunk (input layer) or the hidden state (blocks).
            self.register_buffer("inp_w_x", d.inp.weight[:, :sample_dim].clone())
            for i, b in enumerate(d.blocks):
                self.register_buffer(f"block{i}_w_h", b.linear.weight[:, :hidden].clone())
        self.cond_act = cond_act
        self.norms = nn.ModuleList(copy.deepcopy(b.norm) for b in d.blocks)
        self.out_norm = copy.deepcopy(d.out_norm)
        self.out = copy.deepcopy(d.out)
        self._step = 0
        self._table: list[Tensor] = []
        self._obs_n: Tensor | None = None

    def begin_decode(self) -> None:
        self._step, self._table, self._obs_n = 0, [], None

    def end_decode(self) -> None:
        if self._step != self.num_steps:
            raise SpecializationError(f"the sampler called the denoiser {self._step} times, expected {self.num_steps}")
        self.begin_decode()

    def _conditioning_table(self, obs_n: Tensor) -> list[Tensor]:
        """obs_n [B, obs_dim] -> K tensors [B, (1 + L) * hidden]: every step's conditioning contributions."""
        pre = F.linear(obs_n, self.cond_w_obs)[:, None, :] + self.cond_time_bias  # [B, K, cond]
        c = F.linear(mish(pre), self.cond_w_out, self.cond_b_out)  # [B, K, cond]
        table = F.linear(c, self.cond_proj_w, self.cond_proj_b)  # [B, K, (1 + L) * hidden]
        return list(table.unbind(dim=1))

    def forward(self, x: Tensor, obs_n: Tensor, t: Tensor) -> Tensor:  # noqa: ARG002 (t is known in advance)
        if self._step == 0:
            self._obs_n, self._table = obs_n, self._conditioning_table(obs_n)
        elif obs_n is not self._obs_n:
            raise SpecializationError("the sampler passed a different observation tensor at a later step")
        if self._step >= self.num_steps:
            raise SpecializationError(f"the sampler called the denoiser more than K = {self.num_steps} times")
        parts = self._table[self._step].split(self.hidden, dim=-1)
        self._step += 1
        h = F.linear(x, self.inp_w_x) + parts[0]
        for i, norm in enumerate(self.norms):
            h = h + mish(F.linear(norm(h), getattr(self, f"block{i}_w_h")) + parts[i + 1])
        return self.out(self.out_norm(h))


def _unpack_cond(d: nn.Module) -> tuple[nn.Linear, nn.Module, nn.Linear]:
    if type(d) is not MLPDenoiser:
        raise SpecializationError(f"the denoiser is a {type(d).__name__}, not an MLPDenoiser")
    cond = d.cond
    if (not isinstance(cond, nn.Sequential) or len(cond) != 3 or not isinstance(cond[0], nn.Linear)
            or not isinstance(cond[1], (nn.Mish, ExportMish)) or not isinstance(cond[2], nn.Linear)):
        raise SpecializationError("the denoiser's conditioning MLP is not Linear -> Mish -> Linear")
    return cond[0], cond[1], cond[2]


class DecoderGraph(nn.Module):
    """(obs [B, obs_dim] raw, z [B, H, d]) -> action [B, H, d]: what ``decoder.onnx`` computes.

    ``specialize=True`` swaps in ``StepSpecializedDenoiser`` (raising ``SpecializationError`` when the
    policy does not fit it); either way ``nn.Mish`` becomes ``ExportMish``.  Works on a deep copy.
    """

    def __init__(self, policy: nn.Module, specialize: bool = True) -> None:
        super().__init__()
        policy = copy.deepcopy(policy).eval().requires_grad_(False)
        times = record_step_times(policy) if specialize else None
        replace_mish(policy)
        if specialize:
            policy.denoiser = StepSpecializedDenoiser(policy.denoiser, times)
        self.policy = policy
        self.specialized = specialize

    def forward(self, obs: Tensor, z: Tensor) -> Tensor:
        if not self.specialized:
            return self.policy.decode(obs, z)
        self.policy.denoiser.begin_decode()
        out = self.policy.decode(obs, z)
        self.policy.denoiser.end_decode()
        return out


class SteeringGraph(nn.Module):
    """obs [B, obs_dim] raw -> delta [B, H, d]: what ``steering.onnx`` computes.

    ``shift`` is the steering network's obs -> latent-shift map (an LP-DS agent's ``shift``, or any
    module whose output has H * d values per row).
    """

    def __init__(self, shift: nn.Module, horizon: int, action_dim: int) -> None:
        super().__init__()
        self.shift = shift
        self.horizon, self.action_dim = horizon, action_dim

    def forward(self, obs: Tensor) -> Tensor:
        return self.shift(obs).reshape(-1, self.horizon, self.action_dim)
