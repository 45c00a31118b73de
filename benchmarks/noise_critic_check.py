"""Does the distilled noise critic Q^W stand in for the action critic where the LP-DS actor reads it?

Q^W(s, w) is regressed onto min_j Q^A_j(s, Φ(s, w)) on prior latents w = ε (DESIGN §3), but the actor climbs
it at the steered latents ε + Δ(s).  For each LP-DS run folder given (one with its ``checkpoint.pt``), on
replayed states and fresh prior noise, this compares the two critics at the prior latent ε, at ε + Δ(s) and
at the mean latent Δ(s):

- bias and RMSE of Q^W against Q^A∘Φ at each;
- the gain of the shift, E_ε[Q(s, ε + Δ(s)) − Q(s, ε)] per state, as Q^W and as Q^A∘Φ see it;
- the cosine between the slopes in w the actor could follow, ∇_w Q^W and ∇_w Q^A(s, Φ(s, w)), averaged over
  ε per state (the exact one differentiates through the frozen decoder; nothing is trained).

Q^A is itself an estimate: this checks the distillation, not the returns.  Prints a table and writes JSON.

    python benchmarks/noise_critic_check.py results/hopper-rscale/runs/hopper/diffusion/lpds/seed0 \\
        --out results/noise_critic_check.json
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch

from lpds_ros.errors import LpdsError
from lpds_ros.steering.critic_check import LATENTS, noise_critic_check
from lpds_ros.steering.loop import CHECKPOINT_FILE, load_agent, load_decoder
from lpds_ros.utils import atomic_write_text


def check_run(run: Path, policy: str | None, states: int, latents: int, seed: int) -> dict:
    """``noise_critic_check`` of one LP-DS run folder on ``states`` of its replayed states."""
    state = torch.load(run / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    if state.get("method") not in ("lpds", "lpds-nolagrange", "lpds-gauss"):
        raise LpdsError(f"{run}: a {state.get('method')} run; this check reads LP-DS's noise critic")
    agent = load_agent(run, load_decoder(policy or state["finetune_config"]["policy"]))
    if "q_w" not in agent.nets:
        raise LpdsError(f"{run}: trained with actor_gradient={agent.config.actor_gradient}, it has no noise critic")
    with np.load(io.BytesIO(state["buffer"])) as npz:
        size = int(npz["size"])
        rows = np.sort(np.random.default_rng(seed).choice(size, min(states, size), replace=False))
        obs = torch.as_tensor(npz["data/obs"][rows], dtype=torch.float32)
    return {"run": str(run), "method": state["method"], "states": len(rows), "latents_per_state": latents,
            "reward_scale": agent.config.reward_scale, "delta": agent.config.delta,
            "distill_executed": agent.config.distill_executed, "deviation": agent.deviation(obs),
            **noise_critic_check(agent, obs, latents, seed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="LP-DS run folders, each with its checkpoint.pt")
    parser.add_argument("--policy", help="the frozen policy folder (default: the one the run recorded)")
    parser.add_argument("--states", type=int, default=512, help="replayed states (default 512)")
    parser.add_argument("--latents", type=int, default=16, help="prior latents per state (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    try:
        for run in args.runs:  # all up front: a typo in the last path should not wait for the others
            if not (run / CHECKPOINT_FILE).is_file():
                raise LpdsError(f"{run}: no {CHECKPOINT_FILE} (run folders keep it; the cached seed<k>.json does not)")
        for run in args.runs:
            rows.append(check_run(run, args.policy, args.states, args.latents, args.seed))
    except LpdsError as exc:
        print(f"noise_critic_check: {exc}", file=sys.stderr)
        return 2
    print("| run | E‖Δ‖² | Q^W − Q^A at ε / ε+Δ / Δ | gain of the shift, Q^W / Q^A (corr) | slope cosine per state |")
    print("|---|---|---|---|---|")
    for r in rows:
        bias = " / ".join(f"{r[k]['bias']:+.3f}" for k in LATENTS)
        g = r["gain"]
        print(f"| {r['run']} | {r['deviation']:.2f} | {bias} | {g['q_w']:+.3f} / {g['q_a']:+.3f} ({g['corr']:.2f}) | "
              f"{r['slope']['cosine_per_state']:.2f} |")
    if args.out:
        atomic_write_text(args.out, json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
