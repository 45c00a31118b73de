"""Scripted demonstrators for Adroit relocate and door: the project's own experts where SAC from scratch fails.

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

Door (``DoorDemonstrator``): reach above the lever → put the palm on it → close the fingers → press the lever
down along its arc until the latch is past 1.2 rad → pull the handle along the door's normal while still
pressing.  Its hand differs from relocate's (one arm slide, ARTz, and three arm rotations; the observation
leaves ARTz out, so it is recovered from the observed palm position: ARTz is the outermost joint, a slide along
a fixed axis).  Three measured facts shape it (docs/gym_adroit.md, "Door"):

- the door stays locked until the latch is past ~1.2 rad (a 5 Nm hinge torque moves it 0.02 / 0.09 / 0.5 rad
  in 0.6 s at latch 0.7 / 1.1 / 1.4), so the lever must be pressed down ~70°, far along its arc;
- the hand must **roll with the lever** (ARRz = 1.2 · latch, capped): with a position-only IK the pressed
  lever turns into the gap between the index and the middle finger and wedges there;
- opening to 1.35 rad while holding the handle is beyond the arm's reach for most door placements, so the
  wrist joints are in the IK too (they add ~5 cm) and the pull is fast: the handle slips out of the hand
  at ~1 rad, and the door's momentum carries it past 1.35 rad.
"""
from __future__ import annotations

import numpy as np

from lpds_ros.errors import LpdsError

ARM = np.array([0, 1, 2, 3])
"""Relocate: actuated arm joints the IK moves, the three slides and the pitch joint (qpos / dof / actuator 0–3)."""
ARM_ACTUATORS = 6
"""Relocate: actuators 0–5 drive the arm (slides and rotations); the rest drive the wrist and the fingers."""
FLEXION = np.array([9, 10, 11, 13, 14, 15, 17, 18, 19, 22, 23, 24])
"""Relocate: the J2/J1/J0 flexion actuators of the four fingers."""
THUMB_GRASP = {25: 0.4, 26: 1.2, 28: 0.3, 29: -0.8}
"""Relocate: thumb joint targets of the grasp (rotation, abduction, proximal and distal bend) in radians."""
PALM_OFFSET = np.array([0.0, -0.02, 0.0])
"""Grasp-site position relative to the ball when closing: 2 cm towards the wrist, so the curling fingers
pull the ball into the palm instead of sweeping it out from under it."""
DOOR_HAND_OFFSET = 2
"""The door hand has four arm joints where relocate's has six: its finger and thumb actuators sit two lower."""


class _HandScript:
    """What the Adroit demonstrators share: a private copy of the env's model (with its actuator edits), the
    servos' settle factor (command per unit of settled joint position), the arm's gravity torque, a
    damped-least-squares IK on the grasp site, and the map from joint targets to the normalised action."""

    task = ""
    obs_dim = 0
    FINGER_CLOSE = 1.2  #: flexion target of every finger joint when grasping (radians; range 0–1.6)
    FINGER_RATE = 0.1  #: largest change of a finger target per step (radians)

    def __init__(self, obs_layout: dict[str, int], noise: float = 0.0, seed: int | None = None) -> None:
        import mujoco

        from lpds_ros.envs.gym_tasks import WRAPPED, _build_inner

        if noise < 0:
            raise LpdsError(f"demonstrator noise must be >= 0, got {noise}")
        got = int(sum(obs_layout.values()))
        if got != self.obs_dim:
            raise LpdsError(f"{self.task} demonstrator: expects the {self.obs_dim}-d observation, got {got}")
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        inner = _build_inner(WRAPPED[self.task], None, 0, 0)  # the env's own model, with its actuator edits
        self._mj = mujoco
        self.model = inner.model
        self.data = mujoco.MjData(self.model)
        self.act_mean = np.asarray(inner.act_mean, dtype=np.float64)
        self.act_rng = np.asarray(inner.act_rng, dtype=np.float64)
        self.site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "S_grasp")  # the palm's grasp site
        gain = self.model.actuator_gainprm[:, 0]
        self.settle = -self.model.actuator_biasprm[:, 1] / gain  # command per unit of settled joint position
        self.gain = gain
        inner.close()

    def reset(self) -> None:
        """Start a new episode: first phase, hand command back to the rest pose."""
        self.phase = "reach"
        self.count = 0
        self.command = np.zeros(self.model.nu)  # joint-position targets, radians / metres

    def _grasp_targets(self, actuator_offset: int) -> np.ndarray:
        """Joint targets of the closed hand (fingers flexed, thumb opposed); ``actuator_offset``: how many
        actuators lower this hand's fingers sit than relocate's."""
        grasp = np.zeros(self.model.nu)
        grasp[FLEXION - actuator_offset] = self.FINGER_CLOSE
        for index, value in THUMB_GRASP.items():
            grasp[index - actuator_offset] = value
        return grasp

    def _check(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if obs.shape != (self.obs_dim,):
            raise LpdsError(f"{self.task} demonstrator: observation must have shape ({self.obs_dim},), got {obs.shape}")
        return obs

    def _pose(self, qpos: np.ndarray) -> None:
        """Pose the private model's hand joints (the leading ``len(qpos)`` entries), at rest."""
        mj, d = self._mj, self.data
        d.qpos[: len(qpos)] = qpos
        d.qvel[:] = 0.0
        mj.mj_kinematics(self.model, d)
        mj.mj_comPos(self.model, d)

    def _gravity(self, dofs: int) -> np.ndarray:
        """The generalised gravity force on the first ``dofs`` dofs at the current pose (qvel = 0)."""
        mj, d = self._mj, self.data
        mj.mj_comVel(self.model, d)
        out = np.zeros(self.model.nv)
        mj.mj_rne(self.model, d, 0, out)
        return out[:dofs]

    def _ik(self, qpos: np.ndarray, goal: np.ndarray, joints: np.ndarray, iters: int = 3) -> np.ndarray:
        """``qpos`` with ``joints`` moved (within their ranges) so that the grasp site is at ``goal``."""
        mj, d = self._mj, self.data
        qpos = qpos.copy()
        low, high = self.model.jnt_range[joints, 0], self.model.jnt_range[joints, 1]
        jac = np.zeros((3, self.model.nv))
        for _ in range(iters):
            self._pose(qpos)
            mj.mj_jacSite(self.model, d, jac, None, self.site)
            j = jac[:, joints]
            err = goal - d.site_xpos[self.site]
            step = j.T @ np.linalg.solve(j @ j.T + 1e-3 * np.eye(3), err)
            qpos[joints] = np.clip(qpos[joints] + step, low, high)
        return qpos

    def _action(self, command: np.ndarray, gravity: np.ndarray) -> np.ndarray:
        """Joint targets (+ the arm's gravity feed-forward) → the env's normalised action, noised, clipped."""
        ctrl = command * self.settle
        ctrl[: len(gravity)] += gravity / self.gain[: len(gravity)]
        action = (ctrl - self.act_mean) / self.act_rng
        if self.noise > 0:
            action = action + self.rng.normal(0.0, self.noise, size=action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


class RelocateDemonstrator(_HandScript):
    """Scripted expert of ``adroit-relocate``: ``reset()`` at every episode start, then ``act(obs)``."""

    task = "adroit-relocate"
    obs_dim = 39
    REACH_RATE = 0.2  #: largest arm target − observed joint position while reaching (m or rad)
    CARRY_RATE = 0.15  #: the same while holding the ball
    HOVER = 0.08  #: height above the grasp point from which the hand descends (m)
    GRASP_STEPS = 8  #: steps the fingers close before lifting
    LIFTED_Z = 0.08  #: ball height (m) above which the lift is done and the carry starts
    DROP = 0.06  #: palm-ball distance (m) that counts as a dropped ball while lifting or carrying

    def __init__(self, obs_layout: dict[str, int], noise: float = 0.0, seed: int | None = None) -> None:
        super().__init__(obs_layout, noise, seed)
        self.grasp = self._grasp_targets(0)
        self.reset()

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
        obs = self._check(obs)
        hand = obs[:30]
        self._pose(hand)
        palm, gravity = self.data.site_xpos[self.site].copy(), self._gravity(ARM_ACTUATORS)
        ball, target = palm - obs[30:33], palm - obs[33:36]
        waypoint, closed = self._plan(palm, ball, target)
        arm = hand[:ARM_ACTUATORS].copy()  # from the observed pose, so the law has no hidden integrator
        arm[4:] = 0.0  # yaw and roll stay at rest
        rate = self.REACH_RATE if self.phase in ("reach", "descend") else self.CARRY_RATE
        posed = hand.copy()
        posed[:ARM_ACTUATORS] = arm
        solved = self._ik(posed, waypoint, ARM)[:ARM_ACTUATORS]
        self.command[:ARM_ACTUATORS] = arm + np.clip(solved - arm, -rate, rate)
        if closed:
            self.command[6:] += np.clip(self.grasp[6:] - self.command[6:], -self.FINGER_RATE, self.FINGER_RATE)
        return self._action(self.command, gravity)


class DoorDemonstrator(_HandScript):
    """Scripted expert of ``adroit-door``: ``reset()`` at every episode start, then ``act(obs)``.

    Observation (39): hand joints qpos[1:28] (ARTz left out), latch angle, hinge angle, palm position, handle
    position, palm − handle, open flag.  Actuators: ARTz, ARRx, ARRy, ARRz (arm), WRJ1, WRJ0 (wrist), fingers.
    """

    task = "adroit-door"
    obs_dim = 39
    ARM_DOFS = 6  #: arm + wrist joints under position control with gravity feed-forward
    IK_JOINTS = np.array([0, 1, 2, 4, 5])  #: ARTz, ARRx, ARRy, WRJ1, WRJ0; ARRz (3) rolls with the lever
    ROLL = 3  #: ARRz
    ROLL_PER_LATCH = 1.2  #: forearm roll per radian of latch angle
    ROLL_LATCH_CAP = 1.4  #: latch angle beyond which the roll stops following (rad)
    HOVER = np.array([0.0, -0.04, 0.07])  #: grasp site relative to the handle before the descent (m)
    GRIP = np.array([0.0, -0.04, 0.01])  #: grasp site relative to the handle while holding it (m): 4 cm short of it
    GRASP_STEPS = 5  #: steps the fingers close before pressing
    UNLATCHED = 1.2  #: latch angle from which the door can swing (rad)
    PRESS_LEAD = 0.3  #: how far along the lever's arc the press waypoint leads the handle (m)
    PULL_LEAD = 1.2  #: how far along the door's normal the pull waypoint leads the handle (m)
    KEEP_PRESSED = 0.05  #: press lead kept while pulling, so the latch stays open (m)
    DROP = 0.07  #: palm-handle distance (m) that counts as a lost handle while pulling
    RATES = {"press": 0.6, "pull": 1.5}  #: largest joint-target step per phase (m or rad); others 0.3
    RATE = 0.3

    def __init__(self, obs_layout: dict[str, int], noise: float = 0.0, seed: int | None = None) -> None:
        super().__init__(obs_layout, noise, seed)
        self.grasp = self._grasp_targets(DOOR_HAND_OFFSET)
        self.reset()

    def _hand_qpos(self, obs: np.ndarray) -> np.ndarray:
        """All 28 hand joints: the observed 27 plus ARTz, recovered from the observed palm position (ARTz is
        the outermost joint, a slide along a fixed axis, so palm = palm(ARTz = 0) + ARTz · axis).  Exact at
        rest; in motion it lags by one physics substep, because the observed palm position is computed
        before MuJoCo integrates (< 5 mm at reaching speed)."""
        qpos = np.zeros(28)
        qpos[1:] = obs[:27]
        self._pose(qpos)
        axis = self.data.xaxis[0]
        qpos[0] = float(np.dot(obs[29:32] - self.data.site_xpos[self.site], axis))
        return qpos

    def _plan(self, latch: float, hinge: float, palm: np.ndarray, handle: np.ndarray) -> tuple[np.ndarray, bool]:
        """(grasp-site waypoint, fingers closed?) for this step; advances the phase machine."""
        self.count += 1
        along_lever = np.array([-np.sin(latch), 0.0, -np.cos(latch)])  # the handle's direction as the latch opens
        door_normal = np.array([np.sin(hinge), -np.cos(hinge), 0.0])  # the handle's direction as the door opens
        if self.phase == "pull" and np.linalg.norm(palm - handle) > self.DROP:  # lost the handle: start over
            self.phase, self.count = "reach", 0
        if self.phase == "reach":
            waypoint = handle + self.HOVER
            if np.linalg.norm(palm - waypoint) < 0.06 or self.count > 60:
                self.phase, self.count = "descend", 0
            return waypoint, False
        if self.phase == "descend":
            waypoint = handle + self.GRIP
            if np.linalg.norm(palm - waypoint) < 0.03 or self.count > 30:
                self.phase, self.count = "grasp", 0
            return waypoint, False
        if self.phase == "grasp":
            if self.count > self.GRASP_STEPS:
                self.phase, self.count = "press", 0
            return handle + self.GRIP, True
        if self.phase == "press":
            if latch > self.UNLATCHED or self.count > 100:
                self.phase, self.count = "pull", 0
            return handle + self.GRIP + self.PRESS_LEAD * along_lever, True
        return handle + self.GRIP + self.PULL_LEAD * door_normal + self.KEEP_PRESSED * along_lever, True

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = self._check(obs)
        qpos = self._hand_qpos(obs)
        self._pose(qpos)
        gravity = self._gravity(self.ARM_DOFS)
        latch, hinge, palm, handle = obs[27], obs[28], obs[29:32], obs[32:35]
        waypoint, closed = self._plan(latch, hinge, palm, handle)
        posed = qpos.copy()
        posed[self.ROLL] = np.clip(self.ROLL_PER_LATCH * min(latch, self.ROLL_LATCH_CAP),
                                   *self.model.jnt_range[self.ROLL])
        solved = self._ik(posed, waypoint, self.IK_JOINTS)[: self.ARM_DOFS]
        arm = qpos[: self.ARM_DOFS]  # from the observed pose, so the law has no hidden integrator
        rate = self.RATES.get(self.phase, self.RATE)
        self.command[: self.ARM_DOFS] = arm + np.clip(solved - arm, -rate, rate)
        fingers = slice(self.ARM_DOFS, None)
        if closed:
            self.command[fingers] += np.clip(self.grasp[fingers] - self.command[fingers],
                                             -self.FINGER_RATE, self.FINGER_RATE)
        else:
            self.command[fingers] = 0.0  # open (and stay open while re-approaching after a lost handle)
        return self._action(self.command, gravity)
