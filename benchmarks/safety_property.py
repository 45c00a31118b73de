"""The safety filter's property over 10^6 random cycles (the test runs the same property 10,000 times).

Runs ``BatchSafetyFilter`` -- the core ``SafetyFilter`` wraps -- on many independent streams at once,
each fed random requests and measured states that include NaN/inf/huge values, missing inputs, stale,
future and NaN stamps, e-stops and their resets, filter resets, every robot mode, and joints at and
beyond their limits.  After every cycle it checks, for every stream:

- every emitted command is finite, inside the workspace box, with a unit quaternion and a gripper
  command in range;
- it moved at most the step limits (translation, rotation) from the stream's previous emitted command;
- a held cycle (any reason but OK / JOINT_LIMIT) repeats the previous command exactly;
- a latched e-stop always holds with reason ESTOP; NUMERIC_GUARD never fires.

Prints a table and writes results/safety_property.json.

    python benchmarks/safety_property.py                 # 10,000 streams x 100 cycles = 10^6
    python benchmarks/safety_property.py --robot none    # without the joint-limit check
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np

from lpds_ros.config import config_to_dict
from lpds_ros.safety import (
    BatchSafetyFilter,
    Limit,
    Reason,
    RequestBatch,
    SafetyConfig,
    StateBatch,
    load_safety_config,
)
from lpds_ros.safety.franka import JOINT_LIMITS
from lpds_ros.safety.rotations import quat_angle
from lpds_ros.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
BAD_VALUES = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300, 1e-300])
TOL = 1e-9


def _poison(rng: np.random.Generator, values: np.ndarray, rows: np.ndarray) -> None:
    """Overwrite one random entry of each selected row with NaN/inf/huge/tiny."""
    idx = np.flatnonzero(rows)
    cols = rng.integers(values.shape[1], size=idx.size)
    values[idx, cols] = rng.choice(BAD_VALUES, size=idx.size)


def _stale_stamps(rng: np.random.Generator, now: np.ndarray, n: int) -> np.ndarray:
    choices = np.stack([now - 0.6, now - 100.0, now + 1.0, np.full_like(now, np.nan), np.full_like(now, np.inf)], 1)
    return choices[np.arange(n), rng.integers(choices.shape[1], size=n)]


# Kinds of input and their shares, as in tests/test_safety.py's code words (each table has 16 or 8 slots).
REQUEST_KINDS = np.array(["normal"] * 11 + ["none", "poisoned", "huge", "stale", "normal"])
STATE_KINDS = np.array(["track"] * 10 + ["random", "poisoned", "stale", "none", "track", "track"])
JOINT_KINDS = np.array(["inside"] * 5 + ["beyond", "nan", "inside"])
MODES = np.array([2] * 9 + [0, 1, 3, 4, 5, 6, -1])  # franka robot_mode; 2 = MOVE, -1 = unknown
DTS = np.array([0.05, 0.02, 0.0, 0.3])


def random_cycle(rng: np.random.Generator, now: np.ndarray, prev_pos: np.ndarray, prev_quat: np.ndarray, has_prev: np.ndarray,
                 config: SafetyConfig):
    """Random inputs for every stream."""
    n = now.shape[0]
    lo, hi = config.workspace.lo, config.workspace.hi
    req_kind = REQUEST_KINDS[rng.integers(16, size=n)]
    req_pos = rng.uniform(-1.5, 1.5, (n, 3))
    req_quat = rng.uniform(-1.0, 1.0, (n, 4))
    req_grip = rng.uniform(-2.0, 2.0, n)
    req_stamp = now - rng.uniform(0.0, 0.3, n)
    near = has_prev & (rng.random(n) < 0.5)  # half the requests are small moves, as a policy makes
    req_pos[near] = prev_pos[near] + rng.normal(0.0, 0.01, (int(near.sum()), 3))
    req_quat[near] = prev_quat[near] + rng.normal(0.0, 0.03, (int(near.sum()), 4))
    poisoned = req_kind == "poisoned"
    which = rng.random(n)
    _poison(rng, req_pos, poisoned & (which < 0.4))
    _poison(rng, req_quat, poisoned & (which >= 0.4) & (which < 0.8))
    grip_bad = poisoned & (which >= 0.8)
    req_grip[grip_bad] = rng.choice(BAD_VALUES, size=int(grip_bad.sum()))
    req_pos[req_kind == "huge"] *= 1e300
    req_stamp = np.where(req_kind == "stale", _stale_stamps(rng, now, n), req_stamp)

    state_kind = STATE_KINDS[rng.integers(16, size=n)]
    pos = rng.uniform(-1.5, 1.5, (n, 3))
    track = state_kind == "track"
    pos[track] = np.where(has_prev[track, None], prev_pos[track] + rng.normal(0.0, 0.03, (int(track.sum()), 3)),
                          rng.uniform(lo, hi, (int(track.sum()), 3)))
    quat = rng.uniform(-1.0, 1.0, (n, 4))
    follows = track & has_prev
    quat[follows] = prev_quat[follows] + rng.normal(0.0, 0.05, (int(follows.sum()), 4))
    which = rng.random(n)
    _poison(rng, pos, (state_kind == "poisoned") & (which < 0.5))
    _poison(rng, quat, (state_kind == "poisoned") & (which >= 0.5))
    stamp = np.where(state_kind == "stale", _stale_stamps(rng, now, n), now - rng.uniform(0.0, 0.15, n))

    joints = None
    if config.robot in JOINT_LIMITS:
        jlo, jhi = JOINT_LIMITS[config.robot]
        joint_kind = JOINT_KINDS[rng.integers(8, size=n)]
        joints = rng.uniform(jlo, jhi, (n, 7))
        beyond = joint_kind == "beyond"
        joints[beyond] = rng.uniform(jlo - 0.2, jhi + 0.2, (int(beyond.sum()), 7))
        joints[joint_kind == "nan"] = np.nan
    mode = MODES[rng.integers(16, size=n)]
    return (
        RequestBatch(req_pos, req_quat, req_grip, req_stamp, valid=req_kind != "none"),
        StateBatch(pos, quat, stamp, joints, mode, valid=state_kind != "none"),
    )


def run(config: SafetyConfig, streams: int, cycles: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    filt = BatchSafetyFilter(config, streams)
    lo, hi = config.workspace.lo, config.workspace.hi
    now = np.zeros(streams)
    reasons = np.zeros(len(Reason), dtype=np.int64)
    limits = {flag.name: 0 for flag in Limit if flag}
    violations = {"nonfinite": 0, "outside_box": 0, "not_unit_quat": 0, "gripper_range": 0, "translation_step": 0,
                  "rotation_step": 0, "hold_changed_command": 0, "estop_not_holding": 0, "numeric_guard": 0}
    max_step = max_rot = 0.0
    seconds = 0.0
    for _ in range(cycles):
        now = now + DTS[rng.integers(4, size=streams)]
        prev_pos, prev_quat, prev_grip, has_prev = filt.last_command
        event = rng.random(streams)
        filt.trigger_estop(event < 0.01)  # e-stop 1 %, its reset 5 %, a filter reset 2 % of cycles
        filt.reset_estop((event >= 0.01) & (event < 0.06))
        reset = (event >= 0.06) & (event < 0.08)
        filt.reset(reset)
        has_prev &= ~reset
        request, state = random_cycle(rng, now, prev_pos, prev_quat, has_prev, config)

        start = time.perf_counter()
        out = filt.step(now, request, state)
        seconds += time.perf_counter() - start

        reasons += np.bincount(out.reason, minlength=len(Reason))
        for flag in Limit:
            if flag:
                limits[flag.name] += int(((out.limits & flag) != 0).sum())
        emitted = out.has_command
        both = emitted & has_prev
        step = np.linalg.norm(out.position - prev_pos, axis=1)
        rot = quat_angle(prev_quat, out.orientation)
        held = (out.reason != Reason.OK) & (out.reason != Reason.JOINT_LIMIT)
        violations["nonfinite"] += int((emitted & ~(np.isfinite(out.position).all(1) & np.isfinite(out.orientation).all(1)
                                                    & np.isfinite(out.gripper))).sum())
        violations["outside_box"] += int((emitted & ~((out.position >= lo) & (out.position <= hi)).all(1)).sum())
        violations["not_unit_quat"] += int((emitted & (np.abs(np.linalg.norm(out.orientation, axis=1) - 1) > TOL)).sum())
        violations["gripper_range"] += int((emitted & ((out.gripper < config.gripper_min) | (out.gripper > config.gripper_max))).sum())
        violations["translation_step"] += int((both & (step > config.max_translation_step_m * (1 + TOL))).sum())
        violations["rotation_step"] += int((both & (rot > config.max_rotation_step_rad + TOL)).sum())
        violations["hold_changed_command"] += int((both & held & ((out.position != prev_pos).any(1) | (out.gripper != prev_grip))).sum())
        violations["estop_not_holding"] += int((filt.estopped & (out.reason != Reason.ESTOP)).sum())
        violations["numeric_guard"] += int((out.reason == Reason.NUMERIC_GUARD).sum())
        max_step = max(max_step, float(step[both].max(initial=0.0)))
        max_rot = max(max_rot, float(rot[both].max(initial=0.0)))

    total = streams * cycles
    return {
        "cycles_total": total,
        "streams": streams,
        "cycles_per_stream": cycles,
        "seed": seed,
        "filter_seconds": round(seconds, 3),
        "filter_cycles_per_s": round(total / seconds),
        "violations": violations,
        "passed": not any(violations.values()),
        "max_translation_step_m": max_step,
        "max_rotation_step_rad": max_rot,
        "reasons": {reason.name: int(reasons[reason]) for reason in Reason},
        "limits": limits,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000, help="independent filters run side by side")
    parser.add_argument("--cycles", type=int, default=100, help="cycles per stream (total = streams x cycles)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--robot", choices=sorted(JOINT_LIMITS) + ["none"], help="override config robot (joint check)")
    parser.add_argument("--out", default=str(REPO / "results/safety_property.json"))
    args = parser.parse_args(argv)

    config = load_safety_config(REPO / "config/safety.yaml", REPO / "calibration/workspace.yaml")
    if args.robot:
        config = dataclasses.replace(config, robot=args.robot)
    wall = time.perf_counter()
    result = run(config, args.streams, args.cycles, args.seed)
    result["wall_seconds"] = round(time.perf_counter() - wall, 3)
    result["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    result["config"] = config_to_dict(config)

    total = result["cycles_total"]
    print(f"safety filter property: {total:,} cycles ({args.streams:,} streams x {args.cycles}), robot={config.robot}")
    print(f"{'reason':<20}{'cycles':>12}{'share':>9}")
    for name, count in result["reasons"].items():
        print(f"{name:<20}{count:>12,}{count / total:>9.1%}")
    print(f"{'limit applied':<20}{'cycles':>12}{'share':>9}")
    for name, count in result["limits"].items():
        print(f"{name:<20}{count:>12,}{count / total:>9.1%}")
    print(f"{'invariant':<20}{'violations':>12}")
    for name, count in result["violations"].items():
        print(f"{name:<20}{count:>12,}")
    print(f"largest step: {result['max_translation_step_m']:.6f} m (limit {config.max_translation_step_m}), "
          f"{result['max_rotation_step_rad']:.6f} rad (limit {config.max_rotation_step_rad})")
    print(f"filter time {result['filter_seconds']} s ({result['filter_cycles_per_s']:,} cycles/s), wall {result['wall_seconds']} s")
    print("PASS" if result["passed"] else "FAIL")
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
