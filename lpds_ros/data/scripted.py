"""Scripted demonstrators for the Franka tasks (waypoints read from the observation only) and the registry
of every task's demonstrator (``DEMONSTRATORS``; Adroit relocate's and door's live in ``adroit_scripted``,
the pen and hammer planners in ``adroit_mpc``).

``make_demonstrator(task, noise, seed)`` returns an object with ``reset()`` (call at every episode start)
and ``act(obs) -> action`` (float32, in the task's ``Box(-1, 1, (4,))``).  Each demonstrator is a small
phase machine: above the object → descend → close → lift → (carry → lower → release / insert).  Position
commands are a proportional law on the observed TCP position,

    a[:3] = clip(k · (waypoint − eef_pos) / action_scale, −1, 1),   k = 0.3,

which, with the env's persistent target lagging the arm by about one control step, converges without
overshoot.  While carrying it servoes the *object* (waypoint = eef + goal − object), so a grasp that is
off-centre does not matter.  It notices a lost object (dropped, or not picked up) and starts over.

Noise: ``noise`` is the std of i.i.d. Gaussian noise added to every action dimension (then clipped), drawn
from a generator seeded with ``seed``; ``reset()`` does not reseed, so successive episodes get fresh noise.
With the env's 0.05 m action scale, noise 0.1 jitters the TCP by about 5-7 mm, which is what makes it fail
now and then: a fingertip lands on the can's rim and tips it over, or the peg catches on the hole's rim
and slips in the grasp.  The phase memory (which step of the script it is in, and a counter) is the only
state besides the observation.

Measured (100 episodes per cell, ``python -m lpds_ros.data.scripted --episodes 100 --noise 0 0.1 0.2``):
success at noise 0 / 0.1 / 0.2 — franka-lift 100 / 100 / 98 %, franka-pickplace 100 / 96 / 66 %,
franka-insert 100 / 98 / 39 %.  Lift has no failure at 0.1: its margins (1.5 cm; 5 mm for a cube turned
45°) are wider than the jitter.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from lpds_ros.data.adroit_mpc import HammerDemonstrator, MPPIDemonstrator, PenDemonstrator
from lpds_ros.data.adroit_scripted import DoorDemonstrator, RelocateDemonstrator
from lpds_ros.errors import LpdsError

GAIN = 0.3  #: fraction of the position error commanded per control step
OPEN, CLOSE = -1.0, 1.0


class Demonstrator:
    """Shared machinery; a subclass implements ``_plan(o) -> (waypoint xyz, gripper command)``."""

    task: str = ""

    def __init__(self, obs_layout: dict[str, int], noise: float = 0.0, seed: int | None = None,
                 action_scale: float = 0.05):
        if noise < 0:
            raise LpdsError(f"demonstrator noise must be >= 0, got {noise}")
        self.obs_layout = dict(obs_layout)
        self.noise = float(noise)
        self.action_scale = float(action_scale)
        self.rng = np.random.default_rng(seed)
        self._slices: dict[str, slice] = {}
        start = 0
        for key, size in self.obs_layout.items():
            self._slices[key] = slice(start, start + size)
            start += size
        self.obs_dim = start
        needed = {"robot0_eef_pos", "robot0_gripper_width", "object_pos"}
        missing = needed - set(self.obs_layout)
        if missing:
            raise LpdsError(f"{self.task} demonstrator: observation layout lacks {sorted(missing)}")
        self.reset()

    def reset(self) -> None:
        """Start a new episode (the phase machine goes back to its first phase)."""
        self.phase = "approach"
        self.count = 0
        self.attempts = 0

    def _get(self, obs: np.ndarray, key: str) -> np.ndarray:
        return obs[self._slices[key]].astype(np.float64)

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.shape != (self.obs_dim,):
            raise LpdsError(f"{self.task} demonstrator: observation must have shape ({self.obs_dim},), got {obs.shape}")
        o = {key: self._get(obs, key) for key in self._slices}
        waypoint, grip = self._plan(o)
        move = np.clip(GAIN * (waypoint - o["robot0_eef_pos"]) / self.action_scale, -1.0, 1.0)
        action = np.append(move, grip)
        if self.noise > 0:
            action = action + self.rng.normal(0.0, self.noise, size=4)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _goto(self, phase: str) -> None:
        self.phase, self.count = phase, 0

    def _restart(self) -> None:
        self.attempts += 1
        self._goto("approach")

    # ------------------------------------------------------------------ the common pick
    def _pick(self, o: dict, grasp_z: float, hover: float, lift_z: float) -> tuple[np.ndarray, float] | None:
        """Phases approach → descend → close → lift; returns (waypoint, gripper) or None once lifted."""
        eef, obj, width = o["robot0_eef_pos"], o["object_pos"], o["robot0_gripper_width"][0]
        self.count += 1
        if self.phase == "approach":
            above = np.array([obj[0], obj[1], grasp_z + hover])
            xy_err = np.linalg.norm(eef[:2] - obj[:2])
            if xy_err < 0.01 and width > 0.07 and abs(eef[2] - above[2]) < 0.03:
                self._goto("descend")
            return above, OPEN
        if self.phase == "descend":
            target = np.array([obj[0], obj[1], grasp_z])
            if np.linalg.norm(eef[:2] - obj[:2]) > 0.03:
                self._goto("approach")
            elif abs(eef[2] - grasp_z) < 0.008 and np.linalg.norm(eef[:2] - obj[:2]) < 0.01:
                self._goto("close")
            elif self.count > 40:
                self._restart()
            return target, OPEN
        if self.phase == "close":
            if self.count >= 8:
                self._goto("lift")
            return np.array([obj[0], obj[1], grasp_z]), CLOSE
        if self.phase == "lift":
            if width < 0.01:  # closed on nothing
                self._restart()
                return eef + np.array([0.0, 0.0, 0.05]), OPEN
            if eef[2] > lift_z - 0.02:
                return None
            return np.array([eef[0], eef[1], lift_z]), CLOSE
        return None

    def _holding(self, o: dict, max_offset: float = 0.03) -> bool:
        """The object moves with the hand: close to the TCP and the fingers not shut on nothing."""
        offset = o["object_pos"] - o["robot0_eef_pos"]
        return bool(np.linalg.norm(offset[:2]) < max_offset and abs(offset[2]) < 0.04
                    and o["robot0_gripper_width"][0] > 0.01)

    def _plan(self, o: dict) -> tuple[np.ndarray, float]:
        raise NotImplementedError


class LiftDemonstrator(Demonstrator):
    """Grasp the cube 5 mm below its centre and lift it 10 cm."""

    task = "franka-lift"
    grasp_dz = -0.005
    lift = 0.10

    def _plan(self, o):
        rest_z = 0.025  # the cube's resting centre height
        if self.phase in ("approach", "descend", "close", "lift"):
            if self.phase == "lift" and not self._holding(o) and self.count > 3:
                self._restart()
            step = self._pick(o, rest_z + self.grasp_dz, hover=0.06, lift_z=rest_z + self.lift)
            if step is not None:
                return step
            self._goto("hold")
        eef = o["robot0_eef_pos"]
        if not self._holding(o):
            self._restart()
            return eef + np.array([0.0, 0.0, 0.03]), OPEN
        return np.array([eef[0], eef[1], rest_z + self.lift]), CLOSE


class PickPlaceDemonstrator(Demonstrator):
    """Grasp the can at its centre, lift it over the bin wall, carry it above the bin, lower it and let go."""

    task = "franka-pickplace"
    half_height = 0.05
    carry_z = 0.15  # TCP height while carrying: the can's bottom 4 cm above the 6 cm bin walls
    place_clearance = 0.01  # release with the can's bottom this far above the bin floor

    def _plan(self, o):
        eef, obj, goal = o["robot0_eef_pos"], o["object_pos"], o["goal_pos"]
        if self.phase in ("approach", "descend", "close", "lift"):
            if self.phase == "lift" and not self._holding(o) and self.count > 3:
                self._restart()
            step = self._pick(o, self.half_height, hover=0.08, lift_z=self.carry_z)
            if step is not None:
                return step
            self._goto("carry")
        if self.phase in ("carry", "lower") and not self._holding(o):
            self._restart()
            return eef + np.array([0.0, 0.0, 0.03]), OPEN
        self.count += 1
        if self.phase == "carry":
            target = eef + np.append(goal[:2] - obj[:2], 0.0)
            target[2] = self.carry_z
            if np.linalg.norm(goal[:2] - obj[:2]) < 0.01:
                self._goto("lower")
            return target, CLOSE
        if self.phase == "lower":
            rest_z = goal[2] + self.half_height + self.place_clearance
            target = eef + np.append(goal[:2] - obj[:2], rest_z - obj[2])
            if obj[2] < rest_z + 0.006:
                self._goto("release")
            return target, CLOSE
        if self.phase == "release":
            if self.count > 8:
                self._goto("retreat")
            return eef.copy(), OPEN
        # retreat: open and go up; success fires once the can rests free in the bin
        return np.array([eef[0], eef[1], self.carry_z]), OPEN


class InsertDemonstrator(Demonstrator):
    """Grasp the peg 5 mm above its centre, lift it over the fixture, hold it just above the hole, lower it in;
    when it catches on the rim, back up 1.5 cm and re-centre."""

    task = "franka-insert"
    half_height = 0.05
    grasp_dz = 0.005
    carry_z = 0.15  # TCP height while carrying: the peg's bottom 9.5 cm up, 4.5 cm over the fixture
    hover = 0.015  # the peg's bottom this far above the fixture top while centring it over the hole
    insert_depth = 0.04  # push the peg's bottom this far below the fixture top (success needs 3 cm)
    descent_step = 0.02  # waypoint at most this far below the peg while inserting (about 6 mm/step of travel)

    def _plan(self, o):
        eef, obj, goal = o["robot0_eef_pos"], o["object_pos"], o["goal_pos"]
        if self.phase in ("approach", "descend", "close", "lift"):
            if self.phase == "lift" and not self._holding(o, 0.03) and self.count > 3:
                self._restart()
            step = self._pick(o, self.half_height + self.grasp_dz, hover=0.08, lift_z=self.carry_z)
            if step is not None:
                return step
            self._goto("carry")
        if self.phase in ("carry", "align", "insert") and not self._holding(o, 0.035):
            self._restart()
            return eef + np.array([0.0, 0.0, 0.03]), OPEN
        self.count += 1
        xy_err = goal[:2] - obj[:2]
        bottom = obj[2] - self.half_height  # the peg stays upright in the grasp
        if self.phase == "carry":
            target = eef + np.append(xy_err, 0.0)
            target[2] = self.carry_z
            if np.linalg.norm(xy_err) < 0.01:
                self._goto("align")
            return target, CLOSE
        if self.phase == "align":
            dz = goal[2] + self.hover - bottom
            if np.linalg.norm(xy_err) < 0.004 and abs(dz) < 0.01:
                self._goto("insert")
            return eef + np.append(xy_err, dz), CLOSE
        # insert: a guarded descent, at most `descent_step` per step and only while the peg is centred
        dz = max(goal[2] - self.insert_depth - bottom, -self.descent_step)
        if np.linalg.norm(xy_err) > 0.008:  # the chamfer catches the peg within ~1.3 cm
            dz = 0.0
        if self.count > 15 and bottom > goal[2] - 0.005:  # caught on the rim: back up and re-centre
            self._goto("align")
        return eef + np.append(xy_err, dz), CLOSE


DEMONSTRATORS: dict[str, type[Demonstrator | RelocateDemonstrator | DoorDemonstrator | MPPIDemonstrator]] = {
    "franka-lift": LiftDemonstrator,
    "franka-pickplace": PickPlaceDemonstrator,
    "franka-insert": InsertDemonstrator,
    "adroit-relocate": RelocateDemonstrator,
    "adroit-door": DoorDemonstrator,
    "adroit-pen": PenDemonstrator,
    "adroit-hammer": HammerDemonstrator,
}


def make_demonstrator(task: str, noise: float = 0.0, seed: int | None = None,
                      obs_layout: dict[str, int] | None = None, env=None):
    """The scripted demonstrator of ``task``; ``obs_layout`` defaults to the task's own layout.

    ``env``: the env it will act in.  A privileged demonstrator (``privileged = True``, the pen's planner)
    reads that env's simulator state and is attached to it here; the others ignore it."""
    if task not in DEMONSTRATORS:
        raise LpdsError(f"no scripted demonstrator for task {task!r}; available: {', '.join(DEMONSTRATORS)}")
    if obs_layout is None:
        from lpds_ros.envs import env_class

        obs_layout = env_class(task).layout()
    demonstrator = DEMONSTRATORS[task](obs_layout, noise=noise, seed=seed)
    if env is not None and getattr(demonstrator, "privileged", False):
        demonstrator.attach(env)
    return demonstrator


def run_demonstrator(task: str, episodes: int, noise: float, seed: int = 0) -> dict:
    """Roll the demonstrator out for ``episodes`` episodes (episode i resets with ``seed + i``; the noise
    generator is seeded with ``seed``) and return its success rate and episode lengths."""
    from lpds_ros.envs import make_env

    env = make_env(task)
    demo = make_demonstrator(task, noise=noise, seed=seed, obs_layout=env.unwrapped.obs_layout, env=env)
    successes, lengths = [], []
    start = time.perf_counter()
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        demo.reset()
        steps, success = 0, False
        while True:
            obs, _, terminated, truncated, info = env.step(demo.act(obs))
            steps += 1
            success = success or info["success"]
            if terminated or truncated:
                break
        successes.append(success)
        lengths.append(steps)
    env.close()
    ok = [n for n, s in zip(lengths, successes) if s]
    return {"task": task, "noise": noise, "episodes": episodes, "seed": seed,
            "success_rate": float(np.mean(successes)), "successes": int(np.sum(successes)),
            "length_mean": float(np.mean(lengths)), "success_length_mean": float(np.mean(ok)) if ok else None,
            "success_length_max": int(np.max(ok)) if ok else None, "wall_s": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    """``python -m lpds_ros.data.scripted``: demonstrator success per task and noise level."""
    parser = argparse.ArgumentParser(prog="python -m lpds_ros.data.scripted", description=main.__doc__)
    parser.add_argument("--tasks", nargs="+", default=list(DEMONSTRATORS), choices=list(DEMONSTRATORS))
    parser.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.1])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    results = []
    print(f"{'task':18s} {'noise':>5s} {'success':>8s} {'len':>6s} {'len(ok)':>8s}")
    for task in args.tasks:
        for noise in args.noise:
            r = run_demonstrator(task, args.episodes, noise, args.seed)
            results.append(r)
            ok_len = f"{r['success_length_mean']:8.1f}" if r["success_length_mean"] is not None else f"{'-':>8s}"
            print(f"{task:18s} {noise:5.2f} {r['successes']:4d}/{r['episodes']:<3d} {r['length_mean']:6.1f} {ok_len}")
            sys.stdout.flush()
    if args.json:
        from lpds_ros.utils import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
