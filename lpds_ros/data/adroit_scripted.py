"""A scripted demonstrator for Adroit relocate: the project's own expert where SAC from scratch fails.

No Adroit demonstrations can be downloaded here (DAPG's human demos are the usual source) and SAC from scratch
did not learn the 24–30-actuator hands in a CPU budget (docs/gym_adroit.md).  Relocate has a simple script:
reach above the ball → descend onto it → close the fingers → lift → carry the *ball* to the target (waypoint
= palm + target − ball, so an off-centre grasp does not matter) → hold it there.

It reads only the observation (hand joint positions, palm − ball, palm − target, ball − target) and uses a
private copy of the hand's MuJoCo model for two things the observation cannot give directly:

- **where the palm is**: forward kinematics of the observed hand joints;
- **which arm joint targets put it at a waypoint**: a few damped-least-squares steps on the palm Jacobian
  over the arm's three slides and its pitch joint (ARTx, ARTy, ARTz, ARRx), from the previous command.

Two facts about the model decide the control law (measured, not documented in gymnasium-robotics):

- the arm actuators are position servos with ``gain 500`` and ``bias −200·q``, so a command c settles at
  q = 2.5·c, not at c (the fingers' and wrist's servos settle at q = c);
- the arm sags under gravity by up to its whole range (ARTy, the vertical slide, sits at its lower limit
  for any target below ~0.1): the demonstrator adds the gravity torque of the observed pose, divided by
  the gain, to each arm command.

Each arm target is the *observed* joint position plus the IK correction, clipped to 0.2 (reaching) or 0.15
(holding the ball) in metres or radians: with the servo's 10-step time constant that is a speed limit, and
the law has no hidden integrator, so a behaviour-cloned policy sees everything the action depends on
(except the phase).  An earlier version integrated its own targets (clipped to 2 cm per step): 89% success
without noise but 18% at noise 0.05, and a diffusion policy cloned from 50 of its episodes never succeeded.

Noise: ``noise`` is the std of Gaussian noise added to every normalised action dimension (then clipped),
from a generator seeded with ``seed``, as for the Franka demonstrators.  Measured (``python -m
lpds_ros.data.scripted --tasks adroit-relocate --episodes 100 --noise 0 0.02 0.05``): 84%, 75% and 22%
(``results/adroit_relocate_demonstrator.json``).  Episode i resets with seed i; 200 steps each.
"""
from __future__ import annotations

import numpy as np

from lpds_ros.errors import LpdsError

ARM = np.array([0, 1, 2, 3])
"""Actuated arm joints the IK moves: the three slides and the pitch joint (qpos / dof / actuator 0–3)."""
ARM_ACTUATORS = 6
"""Actuators 0–5 drive the arm (slides and rotations); the rest drive the wrist and the fingers."""
FLEXION = np.array([9, 10, 11, 13, 14, 15, 17, 18, 19, 22, 23, 24])
"""The J2/J1/J0 flexion actuators of the four fingers."""
THUMB_GRASP = {25: 0.4, 26: 1.2, 28: 0.3, 29: -0.8}
"""Thumb joint targets of the grasp (rotation, abduction, proximal and distal bend) in radians."""
PALM_OFFSET = np.array([0.0, -0.02, 0.0])
"""Grasp-site position relative to the ball when closing: 2 cm towards the wrist, so the curling fingers
pull the ball into the palm instead of sweeping it out from under it."""


class RelocateDemonstrator:
    """Scripted expert of ``adroit-relocate``: ``reset()`` at every episode start, then ``act(obs)``."""

    task = "adroit-relocate"
    FINGER_CLOSE = 1.2  #: flexion target of every finger joint when grasping (radians; range 0–1.6)
    FINGER_RATE = 0.1  #: largest change of a finger target per step (radians)
    REACH_RATE = 0.2  #: largest arm target − observed joint position while reaching (m or rad)
    CARRY_RATE = 0.15  #: the same while holding the ball
    HOVER = 0.08  #: height above the grasp point from which the hand descends (m)
    GRASP_STEPS = 8  #: steps the fingers close before lifting
    LIFTED_Z = 0.08  #: ball height (m) above which the lift is done and the carry starts
    DROP = 0.06  #: palm-ball distance (m) that counts as a dropped ball while lifting or carrying

    def __init__(self, obs_layout: dict[str, int], noise: float = 0.0, seed: int | None = None) -> None:
        import mujoco

        from lpds_ros.envs.gym_tasks import WRAPPED, _build_inner

        if noise < 0:
            raise LpdsError(f"demonstrator noise must be >= 0, got {noise}")
        self.obs_dim = int(sum(obs_layout.values()))
        if self.obs_dim != 39:
            raise LpdsError(f"{self.task} demonstrator: expects the 39-d relocate observation, got {self.obs_dim}")
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        inner = _build_inner(WRAPPED[self.task], None, 0, 0)  # the env's own model, with its actuator edits
        self._mj = mujoco
        self.model = inner.model
        self.data = mujoco.MjData(self.model)
        self.act_mean = np.asarray(inner.act_mean, dtype=np.float64)
        self.act_rng = np.asarray(inner.act_rng, dtype=np.float64)
        self.site = int(inner.S_grasp_site_id)
        gain = self.model.actuator_gainprm[:, 0]
        self.settle = -self.model.actuator_biasprm[:, 1] / gain  # command per unit of settled joint position
        self.gain = gain
        self.joint_low = self.model.jnt_range[ARM, 0].copy()
        self.joint_high = self.model.jnt_range[ARM, 1].copy()
        inner.close()
        self.grasp = np.zeros(self.model.nu)
        self.grasp[FLEXION] = self.FINGER_CLOSE
        for index, value in THUMB_GRASP.items():
            self.grasp[index] = value
        self.reset()

    def reset(self) -> None:
        """Start a new episode: first phase, hand command back to the rest pose."""
        self.phase = "reach"
        self.count = 0
        self.command = np.zeros(self.model.nu)  # joint-position targets, radians / metres (fingers: remembered)

    # --------------------------------------------------------------------------------- model
    def _set_pose(self, hand_qpos: np.ndarray, arm: np.ndarray | None = None) -> None:
        """Pose the private model: the observed hand joints, or with ``arm`` the six arm joints commanded."""
        mj, d = self._mj, self.data
        d.qpos[:30] = hand_qpos
        if arm is not None:
            d.qpos[:ARM_ACTUATORS] = arm
        d.qvel[:] = 0.0
        mj.mj_kinematics(self.model, d)
        mj.mj_comPos(self.model, d)

    def _palm_and_gravity(self, hand_qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """At the observed pose: the grasp site's position and the generalised gravity force on the arm dofs
        (qvel = 0), from one posing of the private model."""
        mj, d = self._mj, self.data
        self._set_pose(hand_qpos)
        palm = d.site_xpos[self.site].copy()
        mj.mj_comVel(self.model, d)
        out = np.zeros(self.model.nv)
        mj.mj_rne(self.model, d, 0, out)
        return palm, out[:ARM_ACTUATORS]

    def _ik(self, hand_qpos: np.ndarray, arm: np.ndarray, goal: np.ndarray, iters: int = 3) -> np.ndarray:
        """The six arm joint targets, moved from ``arm`` on the ``ARM`` joints, that put the grasp site at
        ``goal`` (damped least squares)."""
        mj, d = self._mj, self.data
        arm = arm.copy()
        jac = np.zeros((3, self.model.nv))
        for _ in range(iters):
            self._set_pose(hand_qpos, arm)
            mj.mj_jacSite(self.model, d, jac, None, self.site)
            j = jac[:, ARM]
            err = goal - d.site_xpos[self.site]
            step = j.T @ np.linalg.solve(j @ j.T + 1e-3 * np.eye(3), err)
            arm[ARM] = np.clip(arm[ARM] + step, self.joint_low, self.joint_high)
        return arm

    # --------------------------------------------------------------------------------- policy
    def _plan(self, palm: np.ndarray, ball: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, bool]:
        """(grasp-site waypoint, fingers closed?) for this step; advances the phase machine."""
        self.count += 1
        grasp_point = ball + PALM_OFFSET
        if self.phase in ("lift", "carry") and np.linalg.norm(palm - ball) > self.DROP:  # dropped it: start over
            self.phase, self.count = "reach", 0
        if self.phase == "reach":
            waypoint = grasp_point + np.array([0.0, 0.0, self.HOVER])
            if np.linalg.norm((palm - waypoint)[:2]) < 0.03 or self.count > 60:
                self.phase, self.count = "descend", 0
            return waypoint, False
        if self.phase == "descend":
            if np.linalg.norm(palm - grasp_point) < 0.01 or self.count > 50:
                self.phase, self.count = "grasp", 0
            return grasp_point, False
        if self.phase == "grasp":
            if self.count > self.GRASP_STEPS:
                self.phase, self.count = "lift", 0
            return grasp_point, True
        if self.phase == "lift":
            if ball[2] > self.LIFTED_Z or self.count > 40:
                self.phase, self.count = "carry", 0
            return palm + np.array([0.0, 0.0, 0.1]), True
        return palm + (target - ball), True

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if obs.shape != (self.obs_dim,):
            raise LpdsError(f"{self.task} demonstrator: observation must have shape ({self.obs_dim},), got {obs.shape}")
        hand = obs[:30]
        palm, gravity = self._palm_and_gravity(hand)
        ball, target = palm - obs[30:33], palm - obs[33:36]
        waypoint, closed = self._plan(palm, ball, target)
        arm = hand[:ARM_ACTUATORS].copy()  # from the observed pose, so the law has no hidden integrator
        arm[4:] = 0.0  # yaw and roll stay at rest
        rate = self.REACH_RATE if self.phase in ("reach", "descend") else self.CARRY_RATE
        self.command[:ARM_ACTUATORS] = arm + np.clip(self._ik(hand, arm, waypoint) - arm, -rate, rate)
        if closed:
            self.command[6:] += np.clip(self.grasp[6:] - self.command[6:], -self.FINGER_RATE, self.FINGER_RATE)
        ctrl = self.command * self.settle
        ctrl[:ARM_ACTUATORS] += gravity / self.gain[:ARM_ACTUATORS]
        action = (ctrl - self.act_mean) / self.act_rng
        if self.noise > 0:
            action = action + self.rng.normal(0.0, self.noise, size=action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)
