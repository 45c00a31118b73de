"""The Franka simulation core: one MuJoCo scene, a compliant Cartesian tracker and the state readout.

Everything that drives the simulated arm goes through :class:`FrankaSim`: the gymnasium tasks
(``franka_tasks.py``) and the ROS sim node, which feeds it absolute ``target_pose`` messages.  The core
keeps a **persistent target** (TCP position + orientation) and a gripper command; every control period
(20 Hz) it runs one damped-least-squares differential-IK step towards the target with the pose error
clipped, writes the result as joint position set-points of the Panda's position servos, and advances
25 physics steps of 2 ms.  The error clipping makes it a compliant tracker, not a stiff IK jump: the TCP
approaches a far target at a bounded speed, and a target inside an obstacle produces a bounded push.

Frames and quaternion order follow :mod:`lpds_ros.frames`: (x, y, z, w) at this module's public
interface, (w, x, y, z) only in the MuJoCo calls inside it.

The Panda model is the one shipped inside the installed gymnasium-robotics package; the scene files are
in the repository's ``sim/`` folder (or ``share/lpds_ros/sim`` in a colcon install).
"""
from __future__ import annotations

import importlib.util
import math
import os
import string
import sys
from pathlib import Path

import numpy as np

from lpds_ros.errors import LpdsError
from lpds_ros.frames import (
    DOWN_QUAT_XYZW,
    SIM_TCP_OFFSET_LINK7,
    wxyz_to_xyzw,
    xyzw_to_wxyz,
)

# MuJoCo picks its OpenGL backend when it is imported.  Offscreen rendering on a headless machine needs EGL
# (OSMesa fails here); a user's own MUJOCO_GL is respected.
os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco  # noqa: E402

PHYSICS_DT = 0.002  #: s, MuJoCo time step
SUBSTEPS = 25  #: physics steps per control period
CONTROL_DT = PHYSICS_DT * SUBSTEPS  #: s (20 Hz)
CONTROL_HZ = round(1.0 / CONTROL_DT)

ARM_JOINTS = tuple(f"robot:panda0_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("robot:panda0_finger_joint1", "robot:panda0_finger_joint2")
FINGER_ACTUATORS = ("r_gripper_finger_joint", "l_gripper_finger_joint")
FINGER_OPEN = 0.04  #: m, each finger's travel when open (width 0.08)
FINGER_KP = 2000.0  #: N/m, finger position servo gain (force capped at 70 N by the model)
FINGER_DAMPING = 400.0  #: N·s/m, finger joint damping
#: Home TCP pose (base frame): above the workspace centre, gripper pointing down.
HOME_TCP_POS = np.array([0.45, 0.0, 0.22])
#: A posture near the home solution: the home IK's start and its null-space attractor.
_HOME_SEED_Q = np.array([0.0, -0.2, 0.0, -2.5, 0.0, 0.7, 0.0])

_PANDA_PATH = ("envs", "assets", "kitchen_franka", "franka_assets")
_WXYZ_TO_XYZW = np.array([1, 2, 3, 0])


def franka_assets_dir() -> Path:
    """The Panda MJCF + meshes inside the installed gymnasium-robotics (found without importing it)."""
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or spec.origin is None:
        raise LpdsError("gymnasium-robotics is not installed; it ships the Panda model (pip install gymnasium-robotics)")
    path = Path(spec.origin).parent.joinpath(*_PANDA_PATH)
    if not (path / "chain.xml").is_file():
        raise LpdsError(f"the Panda model is missing from gymnasium-robotics: {path}/chain.xml not found")
    return path


def sim_dir() -> Path:
    """The folder with the task scene files: the repository's sim/ or an installed share/lpds_ros/sim."""
    candidates = [Path(__file__).resolve().parents[2] / "sim", Path(sys.prefix) / "share" / "lpds_ros" / "sim"]
    for path in candidates:
        if (path / "franka_scene.xml").is_file():
            return path
    raise LpdsError(f"the MuJoCo scene files (franka_scene.xml) are not in any of {[str(p) for p in candidates]}")


def load_scene(scene_file: str) -> mujoco.MjModel:
    """Compile ``sim/<scene_file>`` (which includes ``franka_scene.xml``) with the Panda from gymnasium-robotics.

    Through MjSpec, before compiling: gravity compensation on every Panda body (setting
    ``body_gravcomp`` on a compiled model has no effect), the collision masks below and the ``tcp`` site
    on link 7.
    """
    folder = sim_dir()
    path = folder / scene_file
    if not path.is_file():
        raise LpdsError(f"scene file not found: {path}")
    subst = {"franka_assets": str(franka_assets_dir())}
    scene = string.Template((folder / "franka_scene.xml").read_text()).substitute(subst)
    try:
        spec = mujoco.MjSpec.from_string(path.read_text(), include={"franka_scene.xml": scene.encode()})
    except ValueError as exc:
        raise LpdsError(f"{path}: MuJoCo cannot parse the scene ({str(exc).splitlines()[0]})") from None
    for body in spec.bodies:
        if body.name.startswith("panda0_"):
            body.gravcomp = 1.0
    # No arm self-collision (+~12% speed; the tasks never fold the arm onto itself and the real arm's own
    # safety layer covers that): arm link geoms get contype 2 / conaffinity 0, every colliding geom that is not
    # the Panda's gets conaffinity 3, so the arm still hits the table and the objects.  The fingers keep
    # contype 1 / conaffinity 0 (they touch the scene, not the arm).
    for geom in spec.geoms:
        if geom.contype == 0 and geom.conaffinity == 0:
            continue
        body_name = geom.parent.name
        if body_name.startswith("panda0_link"):
            geom.contype, geom.conaffinity = 2, 0
        elif not body_name.startswith("panda0_") and geom.conaffinity & 1:
            geom.conaffinity = geom.conaffinity | 2
    # A firmer grip than the kitchen model's (finger servo kp 500: 10 N on a 4 cm peg, which slips when it
    # touches a rim): kp 2000, still capped at the model's ±70 N (the Franka Hand's continuous grasp force).
    # Finger damping 400 N·s/m (was 100) keeps the kitchen model's closing time constant (0.2 s) and overdamps it.
    for name in FINGER_ACTUATORS:
        act = spec.actuator(name)
        act.gainprm[0] = FINGER_KP
        act.biasprm[1] = -FINGER_KP
    for name in FINGER_JOINTS:
        joint = spec.joint(name)
        damping = np.array(joint.damping, dtype=np.float64)  # a 3-vector in MuJoCo 4 (a scalar before)
        damping[0] = FINGER_DAMPING
        joint.damping = damping
    # the TCP frame is link 7's turned -45° about z, like the model's end_effector site: y along the fingers
    minus_45_z = np.array([np.cos(-np.pi / 8), 0.0, 0.0, np.sin(-np.pi / 8)])  # (w, x, y, z)
    spec.body("panda0_link7").add_site(name="tcp", pos=[0.0, 0.0, SIM_TCP_OFFSET_LINK7], quat=minus_45_z,
                                       size=[0.006, 0.0, 0.0], rgba=[1.0, 0.2, 0.2, 0.0], group=4)
    return spec.compile()


class FrankaSim:
    """A Panda on a table with the objects of one scene file, driven by a persistent Cartesian target.

    Control law, once per control period (``step_control``): with J the 6×7 TCP Jacobian,
    e = [clip(p* − p, max_lin_error); clip(log(R* Rᵀ), max_rot_error)] the clipped pose error and
    J⁺ = Jᵀ(JJᵀ + λ²I)⁻¹ the damped pseudo-inverse, N = I − Jᵀ(JJᵀ + 10⁻⁶I)⁻¹J the null-space projector,
        q_set = q + gain · (J⁺ e + N k_null (q_home − q)),
    clipped to the joint limits, is held by the joint servos for 25 physics steps.
    """

    def __init__(self, scene_file: str, gain: float = 2.0, max_lin_error: float = 0.02,
                 max_rot_error: float = 0.3, damping: float = 0.05, null_gain: float = 0.2):
        """``scene_file``: a file in sim/ (e.g. ``franka_lift.xml``); the rest tune the tracking law above."""
        self.model = load_scene(scene_file)
        self.data = mujoco.MjData(self.model)
        self.scene_file = scene_file
        self.gain, self.max_lin_error, self.max_rot_error = gain, max_lin_error, max_rot_error
        self.damping, self.null_gain = damping, null_gain
        m = self.model
        self._arm_qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in ARM_JOINTS])
        self._arm_dadr = np.array([m.jnt_dofadr[m.joint(j).id] for j in ARM_JOINTS])
        self._finger_qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in FINGER_JOINTS])
        if not (np.all(np.diff(self._arm_qadr) == 1) and np.all(np.diff(self._arm_dadr) == 1)):
            raise LpdsError(f"{scene_file}: the Panda arm joints must be consecutive in qpos")
        self._q0, self._d0 = int(self._arm_qadr[0]), int(self._arm_dadr[0])
        self._arm_act = np.array([m.actuator(f"panda0_joint{i}").id for i in range(1, 8)])
        self._finger_act = np.array([m.actuator(n).id for n in FINGER_ACTUATORS])
        self._q_low = m.jnt_range[[m.joint(j).id for j in ARM_JOINTS], 0].copy()
        self._q_high = m.jnt_range[[m.joint(j).id for j in ARM_JOINTS], 1].copy()
        self._tcp = m.site("tcp").id
        self._jac = np.zeros((6, m.nv))
        self._eye6 = np.eye(6) * damping ** 2
        self._eps6 = np.eye(6) * 1e-6
        self._eye7 = np.eye(7)
        self._qbuf = np.zeros(4)
        self._qbuf2 = np.zeros(4)
        self._werr = np.zeros(3)
        self._body_ids: dict[str, int] = {}
        self.home_q = self._solve_home()
        # persistent command state
        self._target_pos = HOME_TCP_POS.copy()
        self._target_quat_wxyz = xyzw_to_wxyz(DOWN_QUAT_XYZW)
        self._gripper_closed = 0.0
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self.reset()

    def __getstate__(self) -> dict:
        """Picklable (for env snapshots): offscreen renderers are not, and are rebuilt on demand."""
        state = dict(self.__dict__)
        state["_renderers"] = {}
        return state

    # ------------------------------------------------------------------ set-up
    def _solve_home(self) -> np.ndarray:
        """Joint angles that put the TCP at HOME_TCP_POS pointing down (iterated DIK on the model alone)."""
        m, d = self.model, mujoco.MjData(self.model)
        q = _HOME_SEED_Q.copy()
        target_quat = xyzw_to_wxyz(DOWN_QUAT_XYZW)
        for _ in range(1000):
            d.qpos[self._arm_qadr] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            err = self._pose_error(d, HOME_TCP_POS, target_quat, clip=False)
            if np.max(np.abs(err)) < 2e-5:
                break
            q = np.clip(q + self._dik(d, err, q, _HOME_SEED_Q), self._q_low, self._q_high)
        else:
            raise LpdsError(f"{self.scene_file}: the home pose IK did not converge (error {np.max(np.abs(err)):.2e})")
        return q

    def reset(self, arm_q: np.ndarray | None = None, gripper_closed: float = 0.0) -> None:
        """Physics state to its default (objects at their compiled poses), arm at ``arm_q`` (default home),
        target = the current TCP pose; call ``forward()`` after moving objects."""
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        q = self.home_q if arm_q is None else np.asarray(arm_q, dtype=np.float64)
        d.qpos[self._arm_qadr] = q
        width = FINGER_OPEN * (1.0 - float(np.clip(gripper_closed, 0.0, 1.0)))
        d.qpos[self._finger_qadr] = width
        d.ctrl[self._arm_act] = q
        d.ctrl[self._finger_act] = width
        self._gripper_closed = float(np.clip(gripper_closed, 0.0, 1.0))
        self.forward()
        self._target_pos = d.site_xpos[self._tcp].copy()
        mujoco.mju_mat2Quat(self._target_quat_wxyz, d.site_xmat[self._tcp])

    def forward(self) -> None:
        """Recompute derived quantities (poses, contacts) after writing qpos or mocap poses directly."""
        mujoco.mj_forward(self.model, self.data)

    # ------------------------------------------------------------------ commands
    def set_target(self, pos_xyz, quat_xyzw=None, gripper_closed: float | None = None) -> None:
        """Set the persistent TCP target (base frame; quaternion (x, y, z, w), default: pointing down)
        and the gripper command in [0, 1] (0 open, 1 closed; ``None`` keeps the current one)."""
        pos = np.array(pos_xyz, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(pos)):
            raise LpdsError(f"target position {pos.tolist()} is not finite")
        q = DOWN_QUAT_XYZW if quat_xyzw is None else np.asarray(quat_xyzw, dtype=np.float64).reshape(4)
        norm = np.linalg.norm(q)
        if not np.isfinite(norm) or norm < 1e-9:
            raise LpdsError(f"target quaternion {q.tolist()} is not a rotation")
        self._target_pos = pos
        self._target_quat_wxyz = xyzw_to_wxyz(q / norm)
        if gripper_closed is not None:
            self._gripper_closed = float(np.clip(gripper_closed, 0.0, 1.0))

    def target(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(target position, target quaternion (x, y, z, w), gripper command) currently held."""
        return self._target_pos.copy(), wxyz_to_xyzw(self._target_quat_wxyz), self._gripper_closed

    def step_control(self) -> None:
        """Advance one control period (25 × 2 ms) tracking the persistent target."""
        self.apply_control()
        self.advance(SUBSTEPS)

    def apply_control(self) -> None:
        """Write this control period's set-points: one DIK step towards the target, and the gripper's."""
        d = self.data
        q = d.qpos[self._q0:self._q0 + 7]
        err = self._pose_error(d, self._target_pos, self._target_quat_wxyz, clip=True)
        q_set = q + self.gain * self._dik(d, err, q, self.home_q)
        d.ctrl[self._arm_act] = np.clip(q_set, self._q_low, self._q_high)
        d.ctrl[self._finger_act] = FINGER_OPEN * (1.0 - self._gripper_closed)

    def advance(self, substeps: int = SUBSTEPS) -> None:
        """Run ``substeps`` physics steps on the current set-points (the ROS sim node splits a control
        period to publish the robot state in between; ``step_control`` runs all 25 at once)."""
        m, d = self.model, self.data
        mujoco.mj_step(m, d, substeps)
        # after mj_step the poses are one substep old: refresh them (and the Jacobian's inputs)
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)

    def _pose_error(self, d: mujoco.MjData, pos: np.ndarray, quat_wxyz: np.ndarray, clip: bool) -> np.ndarray:
        """6-vector [position error; rotation vector of target ⊗ current⁻¹], both in the base frame."""
        dp = pos - d.site_xpos[self._tcp]
        mujoco.mju_mat2Quat(self._qbuf, d.site_xmat[self._tcp])
        mujoco.mju_negQuat(self._qbuf2, self._qbuf)
        mujoco.mju_mulQuat(self._qbuf, quat_wxyz, self._qbuf2)
        mujoco.mju_quat2Vel(self._werr, self._qbuf, 1.0)
        dw = self._werr
        if clip:
            n = math.sqrt(dp @ dp)
            if n > self.max_lin_error:
                dp = dp * (self.max_lin_error / n)
            n = math.sqrt(dw @ dw)
            if n > self.max_rot_error:
                dw = dw * (self.max_rot_error / n)
        return np.concatenate([dp, dw])

    def _dik(self, d: mujoco.MjData, err: np.ndarray, q: np.ndarray, q_rest: np.ndarray) -> np.ndarray:
        """Damped least-squares joint step for the 6-D error, with a posture term in the null space."""
        mujoco.mj_jacSite(self.model, d, self._jac[:3], self._jac[3:], self._tcp)
        jac = self._jac[:, self._d0:self._d0 + 7]
        jjt = jac @ jac.T
        dq = jac.T @ np.linalg.solve(jjt + self._eye6, err)
        # the null-space projector uses a near-exact pseudo-inverse: with the damped one the posture term
        # leaks into the task space and leaves a ~1 mm steady-state error
        null = self._eye7 - jac.T @ np.linalg.solve(jjt + self._eps6, jac)
        return dq + null @ (self.null_gain * (q_rest - q))

    # ------------------------------------------------------------------ state readout
    def tcp_position(self) -> np.ndarray:
        """TCP position (m, base frame)."""
        return self.data.site_xpos[self._tcp].copy()

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """TCP position (m, base frame) and orientation (x, y, z, w), in the hemisphere of the down pose."""
        mujoco.mju_mat2Quat(self._qbuf, self.data.site_xmat[self._tcp])
        quat = self._qbuf[_WXYZ_TO_XYZW]
        if quat @ DOWN_QUAT_XYZW < 0.0:  # canonical_quat(quat, DOWN_QUAT_XYZW), inlined: it runs every step
            quat = -quat
        return self.data.site_xpos[self._tcp].copy(), quat

    def joint_positions(self) -> np.ndarray:
        """The 7 arm joint angles (rad)."""
        return self.data.qpos[self._q0:self._q0 + 7].copy()

    def joint_velocities(self) -> np.ndarray:
        """The 7 arm joint velocities (rad/s)."""
        return self.data.qvel[self._d0:self._d0 + 7].copy()

    def finger_positions(self) -> np.ndarray:
        """The two finger joint positions (m, 0 closed … 0.04 open)."""
        return self.data.qpos[self._finger_qadr].copy()

    def gripper_width(self) -> float:
        """Opening between the fingers (m, 0 closed … 0.08 open)."""
        q = self.data.qpos
        return float(q[self._finger_qadr[0]] + q[self._finger_qadr[1]])

    def object_pose(self, body: str) -> tuple[np.ndarray, np.ndarray]:
        """Position and (x, y, z, w) orientation (w >= 0) of a body (an object or a mocap fixture)."""
        bid = self._body_ids.get(body)
        if bid is None:
            bid = self._body_ids[body] = self.model.body(body).id
        quat = self.data.xquat[bid][_WXYZ_TO_XYZW]
        return self.data.xpos[bid].copy(), (-quat if quat[3] < 0.0 else quat)

    def object_velocity(self, body: str) -> np.ndarray:
        """Linear velocity (m/s, base frame) of a free body's origin."""
        jnt = self.model.body(body).jntadr[0]
        adr = self.model.jnt_dofadr[jnt]
        return self.data.qvel[adr:adr + 3].copy()

    def set_object_pose(self, body: str, pos, quat_xyzw) -> None:
        """Place a free body (at rest) or a mocap body; call ``forward()`` afterwards."""
        m, d = self.model, self.data
        bid = m.body(body).id
        quat = xyzw_to_wxyz(np.asarray(quat_xyzw, dtype=np.float64))
        if m.body_mocapid[bid] >= 0:
            d.mocap_pos[m.body_mocapid[bid]] = pos
            d.mocap_quat[m.body_mocapid[bid]] = quat
            return
        if m.body_jntnum[bid] != 1 or m.jnt_type[m.body_jntadr[bid]] != mujoco.mjtJoint.mjJNT_FREE:
            raise LpdsError(f"body {body!r} is neither a free body nor a mocap body")
        jnt = m.body_jntadr[bid]
        qadr, dadr = m.jnt_qposadr[jnt], m.jnt_dofadr[jnt]
        d.qpos[qadr:qadr + 3] = pos
        d.qpos[qadr + 3:qadr + 7] = quat
        d.qvel[dadr:dadr + 6] = 0.0

    def touching(self, body_a: str, body_b: str) -> bool:
        """Whether any geom of ``body_a`` is in contact with any geom of ``body_b``."""
        n = self.data.ncon
        if n == 0:
            return False
        geoms = self.data.contact.geom[:n]
        bodies = self.model.geom_bodyid[geoms]
        a, b = self.model.body(body_a).id, self.model.body(body_b).id
        return bool(np.any(((bodies[:, 0] == a) & (bodies[:, 1] == b)) | ((bodies[:, 0] == b) & (bodies[:, 1] == a))))

    def grasping(self, body: str) -> bool:
        """Both fingers touch ``body``."""
        return self.touching("panda0_leftfinger", body) and self.touching("panda0_rightfinger", body)

    @property
    def time(self) -> float:
        """Simulated time since reset (s)."""
        return float(self.data.time)

    # ------------------------------------------------------------------ rendering
    def render(self, width: int = 256, height: int = 256, camera: str = "frontview") -> np.ndarray:
        """An (height, width, 3) uint8 RGB image from a scene camera (offscreen; needs MUJOCO_GL=egl headless)."""
        key = (int(width), int(height))
        renderer = self._renderers.get(key)
        if renderer is None:
            try:
                renderer = mujoco.Renderer(self.model, height=key[1], width=key[0])
            except Exception as exc:  # the GL backends raise assorted types (RuntimeError, AttributeError, mujoco.FatalError)
                raise LpdsError(
                    f"offscreen rendering is unavailable (MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r}: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); on a headless machine set "
                    f"MUJOCO_GL=egl before anything imports mujoco") from None
            self._renderers[key] = renderer
        renderer.update_scene(self.data, camera=camera)
        return renderer.render()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
