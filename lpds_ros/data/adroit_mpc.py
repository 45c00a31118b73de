"""Model-predictive demonstrators for Adroit pen and hammer: the project's own experts (no human demos here).

Neither task has a simple script.  The pen (turn a free pen in the hand to a random goal orientation within
100 steps, 1 s) rolls on the fingers, and how it rolls depends on contacts the observation does not show.
The hammer (pick up the hammer, drive the nail into a board at a random height within 200 steps) has its handle
under the wrist, out of reach of a scripted top grasp (docs/gym_adroit.md, "Hammer").  So their demonstrators
plan.  At every control step ``MPPIDemonstrator`` runs MPPI (model-predictive path integral control) on the
env's own MuJoCo model:

1. take the simulation's exact state (``attach(env)`` hands it the env; see "Privileged" below);
2. sample ``samples`` control sequences of ``horizon`` steps around the current plan (Gaussian, std
   ``sigma`` on the normalised action, correlated in time as an AR(1) process with coefficient
   ``correlation``, clipped to [−1, 1]; the plan itself is the first candidate);
3. roll each one out with MuJoCo's C ``rollout`` (frame skip 5, as the env steps) and score it by a task
   reward summed over its control steps (the subclass's ``_score``; below);
4. the new plan is the softmax(score / (``temperature`` · spread))-weighted mean of the candidates, with the
   spread measured from the best score down to the worst (pen) or to the median (hammer); send its first
   action, shift the plan by one step (the last step repeated).

The defaults make the demos clonable, not only successful.  On the pen, with white sampling noise and an
absolute temperature of 1 (the env's rewards differ by tens between candidates, so that picks the best one)
the planner solved 50 of 100 attempts, but its actions were close to white noise (RMS change between
consecutive steps 0.72 on the [−1, 1] scale), and diffusion policies cloned from 20 or 50 of its successes
succeeded 4–6%, below holding still (8%).  Correlated perturbations and a temperature relative to the
score spread (the top ~10% of the candidates share the weight) bring that change to 0.21–0.23.

Scores:

* **pen** (``PenDemonstrator``): the env's dense reward (−distance + orientation cosine, +10 / +50 near the
  goal), with a dropped pen (z < 0.075) costing ``drop_cost`` per step instead of the env's 5.  Solves 40% of
  seeds 0–49 (5 of 8 probe episodes had suggested more; docs/gym_adroit.md, "Pen").
* **hammer** (``HammerDemonstrator``): the env's dense terms (−‖tool head − nail‖, −10 ‖nail − goal‖, +25 / +75
  once the nail is within 2 / 1 cm) with two changes.  The palm-to-hammer term is −``palm_weight`` · distance:
  gymnasium-robotics ≥ 1.2.1 pays +0.1 · distance, which rewards leaving the hammer.  The lift bonus (hammer
  and head above 4 cm) is ``lift_bonus`` = 10 instead of 2, so that candidates dropping the hammer lose.  A
  dropped candidate scores hundreds below a carried one, which would make the range spread ignore the
  centimetres that bring the head to the nail, so the hammer's spread stops at the median score.

**Privileged.**  The demonstrators read the simulator's true state (``env.unwrapped.env.data``), not only
the observation, because the observation leaves out the hand's joint velocities and planning from an
estimate of them solved 1 of 6 pen episodes where the true state solved 4 (docs/gym_adroit.md, "Pen").  This
is legitimate for a data generator: what ``lpds collect`` records is the observation and the action, as for
every other demonstrator, and the policies cloned from it act from the observation alone.  The price is
that ``act`` works only after ``attach`` (``collect`` and ``run_demonstrator`` do that), so these
demonstrators cannot drive a robot, which is fine: they exist to make demos.

Noise: ``noise`` is the std of Gaussian noise added to the sent action (then clipped), from the same
seeded generator as the sampling, as for the other demonstrators.  Cost: ``samples × horizon × 5``
physics substeps per control step: about 14–20 s per 100-step pen episode (32 × 30) and 35–70 s per 200-step
hammer episode (32 × 20; its contacts make a substep ~80 µs) on one core.
"""
from __future__ import annotations

import numpy as np

from lpds_ros.errors import LpdsError

GOAL_DISTANCE = 0.075
"""The env's position tolerance (m): the goal bonus and ``info["success"]`` need the pen this close."""
DROP_HEIGHT = 0.075
"""Pen height (m) below which the env counts it as dropped."""
LIFT_HEIGHT = 0.04
"""Hammer and head height (m) above which the env pays its lift bonus."""
NAIL_DISTANCE = 0.01
"""The env's nail tolerance (m): ``info["success"]`` needs the nail head this close to its goal."""


class MPPIDemonstrator:
    """MPPI expert of an Adroit task: ``attach(env)`` once, ``reset()`` at every episode start, ``act(obs)``.

    Subclasses set ``task``, ``obs_dim`` and ``spread`` and give ``_score``."""

    task = ""
    obs_dim = 0
    spread = "range"  #: "range": best − worst score; "median": best − median (a robust spread)
    privileged = True  #: ``act`` reads the attached env's simulator state; see the module docstring

    def __init__(self, obs_layout: dict[str, int], noise: float = 0.0, seed: int | None = None, *,
                 samples: int = 32, horizon: int = 30, sigma: float = 0.5, temperature: float = 0.1,
                 correlation: float = 0.9, relative_temperature: bool = True) -> None:
        if noise < 0:
            raise LpdsError(f"demonstrator noise must be >= 0, got {noise}")
        got = int(sum(obs_layout.values()))
        if got != self.obs_dim:
            raise LpdsError(f"{self.task} demonstrator: expects the {self.obs_dim}-d observation, got {got}")
        if samples < 2 or horizon < 1 or sigma <= 0 or temperature <= 0 or not 0 <= correlation < 1:
            raise LpdsError(f"{self.task} demonstrator: needs samples >= 2, horizon >= 1, sigma > 0, temperature > 0 "
                            f"and 0 <= correlation < 1, got {samples}, {horizon}, {sigma}, {temperature}, {correlation}")
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self.samples, self.horizon = int(samples), int(horizon)
        self.sigma, self.temperature = float(sigma), float(temperature)
        self.correlation, self.relative_temperature = float(correlation), bool(relative_temperature)
        self.sim = None
        self.reset()

    def attach(self, env) -> None:
        """Plan in ``env`` (this task's env, wrapped or not) from its simulator's true state."""
        import mujoco

        task_env = getattr(env, "unwrapped", env)
        if getattr(task_env, "task_name", None) != self.task:
            raise LpdsError(f"{self.task} demonstrator: attach it to an {self.task} env, "
                            f"not {getattr(task_env, 'task_name', type(task_env).__name__)!r}")
        sim = task_env.env.unwrapped  # the gymnasium-robotics env: its model, data, action scaling and site ids
        self._mj = mujoco
        self.sim = sim
        self.model = sim.model
        self.scratch = mujoco.MjData(sim.model)  # the rollouts' workspace and the scoring's kinematics
        self.frame_skip = int(sim.frame_skip)
        self.act_mean = np.asarray(sim.act_mean, dtype=np.float64)
        self.act_rng = np.asarray(sim.act_rng, dtype=np.float64)
        self.state_kind = mujoco.mjtState.mjSTATE_FULLPHYSICS  # what rollout takes and returns
        self.state = np.empty(mujoco.mj_stateSize(sim.model, self.state_kind))
        self.qpos = slice(1, 1 + sim.model.nq)  # FULLPHYSICS = [time, qpos, qvel, act, ...]
        self.reset()

    def reset(self) -> None:
        """Start a new episode: the plan goes back to the zero (mid-range) action."""
        nu = 0 if self.sim is None else self.model.nu
        self.plan = np.zeros((self.horizon, nu))

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if obs.shape != (self.obs_dim,):
            raise LpdsError(f"{self.task} demonstrator: observation must have shape ({self.obs_dim},), got {obs.shape}")
        if self.sim is None:
            raise LpdsError(f"{self.task} demonstrator: plans from the simulator's state; call attach(env) first "
                            f"(it cannot drive a robot, only make demos)")
        from mujoco import rollout

        mj, sim = self._mj, self.sim
        mj.mj_getState(self.model, sim.data, self.state, self.state_kind)
        noise = self.rng.normal(0.0, self.sigma, (self.samples, self.horizon, self.model.nu))
        if self.correlation > 0:  # AR(1) in time with the same marginal std: smooth perturbations
            keep, fresh = self.correlation, np.sqrt(1.0 - self.correlation ** 2)
            for t in range(1, self.horizon):
                noise[:, t] = keep * noise[:, t - 1] + fresh * noise[:, t]
        candidates = self.plan[None] + noise
        candidates[0] = self.plan
        candidates = np.clip(candidates, -1.0, 1.0)
        control = np.repeat(self.act_mean + candidates * self.act_rng, self.frame_skip, axis=1)
        states, _ = rollout.rollout(self.model, self.scratch, self.state[None], control)
        score = self._score(states[:, self.frame_skip - 1:: self.frame_skip], obs)
        scale = self.temperature
        if self.relative_temperature:  # the same share of the candidates weighs in, whatever the reward's scale
            floor = np.median(score) if self.spread == "median" else score.min()
            scale *= score.max() - floor + 1e-9
        weights = np.exp((score - score.max()) / scale)
        self.plan = np.tensordot(weights / weights.sum(), candidates, axes=1)
        action = self.plan[0].copy()
        self.plan = np.concatenate([self.plan[1:], self.plan[-1:]])
        if self.noise > 0:
            action = action + self.rng.normal(0.0, self.noise, size=action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _score(self, states: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """Summed task reward of each candidate, from its states at the control steps (K, T, nstate)."""
        raise NotImplementedError

    def _positions(self, states: np.ndarray, bodies: tuple[int, ...], sites: tuple[int, ...]) -> list[np.ndarray]:
        """World positions of ``bodies`` then ``sites`` at every state: one (K·T, 3) array each."""
        mj, d = self._mj, self.scratch
        flat = states.reshape(-1, states.shape[-1])
        out = [np.empty((len(flat), 3)) for _ in range(len(bodies) + len(sites))]
        for i, row in enumerate(flat):
            d.qpos[:] = row[self.qpos]
            mj.mj_kinematics(self.model, d)
            for j, b in enumerate(bodies):
                out[j][i] = d.xpos[b]
            for j, site in enumerate(sites, start=len(bodies)):
                out[j][i] = d.site_xpos[site]
        return out


class PenDemonstrator(MPPIDemonstrator):
    """MPPI expert of ``adroit-pen``."""

    task = "adroit-pen"
    obs_dim = 45

    def __init__(self, obs_layout: dict[str, int], noise: float = 0.0, seed: int | None = None, *,
                 drop_cost: float = 50.0, **planner) -> None:
        self.drop_cost = float(drop_cost)
        super().__init__(obs_layout, noise, seed, **planner)

    def _score(self, states: np.ndarray, obs: np.ndarray) -> np.ndarray:
        sim = self.sim
        goal, goal_axis = sim.data.site_xpos[sim.eps_ball_site_id], obs[36:39]
        pos, top, bottom = self._positions(states, (sim.obj_body_id,), (sim.obj_t_site_id, sim.obj_b_site_id))
        distance = np.linalg.norm(pos - goal, axis=1)
        similarity = (top - bottom) @ goal_axis / sim.pen_length
        near = distance < GOAL_DISTANCE
        reward = (-distance + similarity + 10.0 * (near & (similarity > 0.9)) + 50.0 * (near & (similarity > 0.95))
                  - self.drop_cost * (pos[:, 2] < DROP_HEIGHT))
        return reward.reshape(states.shape[:2]).sum(axis=1)


class HammerDemonstrator(MPPIDemonstrator):
    """MPPI expert of ``adroit-hammer``."""

    task = "adroit-hammer"
    obs_dim = 46
    spread = "median"

    def __init__(self, obs_layout: dict[str, int], noise: float = 0.0, seed: int | None = None, *,
                 palm_weight: float = 1.0, lift_bonus: float = 10.0, horizon: int = 20, **planner) -> None:
        self.palm_weight, self.lift_bonus = float(palm_weight), float(lift_bonus)
        super().__init__(obs_layout, noise, seed, horizon=horizon, **planner)

    def _score(self, states: np.ndarray, obs: np.ndarray) -> np.ndarray:
        sim = self.sim
        hammer, palm, head, nail, goal = self._positions(
            states, (sim.obj_body_id,), (sim.S_grasp_site_id, sim.tool_site_id, sim.target_obj_site_id, sim.goal_site_id))
        nail_to_goal = np.linalg.norm(nail - goal, axis=1)
        lifted = (hammer[:, 2] > LIFT_HEIGHT) & (head[:, 2] > LIFT_HEIGHT)
        reward = (-self.palm_weight * np.linalg.norm(palm - hammer, axis=1) - np.linalg.norm(head - nail, axis=1)
                  - 10.0 * nail_to_goal + self.lift_bonus * lifted
                  + 25.0 * (nail_to_goal < 0.02) + 75.0 * (nail_to_goal < NAIL_DISTANCE))
        return reward.reshape(states.shape[:2]).sum(axis=1)
