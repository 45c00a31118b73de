"""The safety filter: a requested end-effector target in, a command the arm may follow out.

Pure numpy, no ROS, no clocks: every time is passed in, so each decision is reproducible in a test.

What one cycle does (``BatchSafetyFilter.step``; ``SafetyFilter`` is the same for one arm):

1. **Hold checks**, in this priority order; the first that applies is the decision's ``Reason`` and the
   last emitted command is repeated unchanged (nothing is emitted if there never was one):
   ESTOP (latched until ``reset_estop``), ROBOT_MODE (REFLEX, USER_STOPPED, ...), NO_STATE,
   INVALID_STATE (NaN/inf, zero quaternion), STALE_STATE, OUTSIDE_WORKSPACE (only before the first
   command: the arm is farther outside the box than ``start_tolerance_m``), NO_INPUT, INVALID_INPUT,
   STALE_INPUT.  A stamp is stale when ``now - stamp`` exceeds the configured age, lies too far in the
   future, or is NaN; the check uses only the stamps passed in, so a stale request holds in the very
   cycle it is seen.
2. **Limits**, applied to a request that passed the checks (each one that changed the target sets a
   ``Limit`` flag):
   position: clamp into the workspace box -> pull within ``max_reference_distance_m`` of the measured
   TCP (reference limiting, issue 9) -> clamp into the box again -> move from the last emitted command
   towards it by at most ``max_translation_step_m``;
   orientation: within ``max_reference_angle_rad`` of the measured orientation -> at most
   ``max_rotation_step_rad`` from the last emitted orientation (slerp, shortest path);
   gripper: clamp into [gripper_min, gripper_max].
   The step limit wins over reference limiting: if the arm was pushed away, the target follows it at
   the step speed instead of jumping.  Since the last command and the limited target are both in the
   (convex) box, every point between them is, so the emitted command is in the box *and* within the
   step limit.  With the measured TCP inside the box the target also lies within the reference
   distance of it (box clamping is a projection and does not increase distances to points inside).
3. **Joint-limit margin** (``robot`` "fr3"/"panda"): the TCP error the impedance controller will act on
   (command minus measured pose) is mapped to joint space with a damped least-squares inverse of the
   arm's Jacobian.  If that motion drives a joint that is within ``joint_limit_margin_rad`` of a limit
   (or beyond it) further out, the request is not followed: the reason is JOINT_LIMIT and the pose
   target steps (within the step limits) from the last command back towards the measured pose, so the
   controller stops pushing that joint; the gripper command still passes.  Motions that bring the joint
   back in are allowed, so the arm is never stuck at a limit.
4. A first command starts from the measured pose (clamped into the box).  ``reset`` forgets the last
   command, so the next one starts from the measured pose again (new episode, after recovery).

Emitted commands are finite, in the box and step-limited by construction; a final guard re-checks
finiteness and holds with NUMERIC_GUARD if that ever failed (the property tests assert it never does).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from lpds_ros.safety.config import ROBOT_MODES, SafetyConfig
from lpds_ros.safety.franka import JOINT_LIMITS, jacobian
from lpds_ros.safety.rotations import (
    IDENTITY_QUAT,
    align_quat,
    norm,
    normalize_quat,
    quat_angle,
    quat_conjugate,
    quat_multiply,
    quat_slerp,
    quat_to_rotvec,
)

# Measured positions farther than this from the base (metres) are not a Franka's TCP: INVALID_STATE.
_MAX_PLAUSIBLE_POSITION_M = 100.0
# Damping of the least-squares inverse in the joint-limit check (keeps it sane near singularities).
_DLS_DAMPING = 0.05
# Predicted joint motions smaller than this (radians) count as "not moving".
_JOINT_MOTION_EPS = 1e-4


class Reason(enum.IntEnum):
    """Why a cycle's request was not followed (OK: it was, possibly limited; see ``Limit``)."""

    OK = 0
    ESTOP = 1  # the e-stop is latched; call reset_estop()
    ROBOT_MODE = 2  # the robot reports a mode in hold_robot_modes (REFLEX, USER_STOPPED, ...)
    NO_STATE = 3  # no measured pose (or no joint positions while the joint check is on)
    INVALID_STATE = 4  # the measured pose/joints are NaN/inf, implausible, or the quaternion is zero
    STALE_STATE = 5  # the measured state's stamp is too old, too far in the future, or NaN
    OUTSIDE_WORKSPACE = 6  # no command yet and the arm is outside the box by more than start_tolerance_m
    NO_INPUT = 7  # no request received yet
    INVALID_INPUT = 8  # the request has NaN/inf, a zero quaternion or an unknown gripper command
    STALE_INPUT = 9  # the request's stamp is too old, too far in the future, or NaN (the watchdog)
    JOINT_LIMIT = 10  # the request would drive a joint near its limit further out; target steps back
    NUMERIC_GUARD = 11  # a computed command was not finite (never expected); the last command is held


# Plain-int copies for the vectorised step (enum attribute access is slow in a hot loop on Python 3.11).
_OK, _ESTOP, _ROBOT_MODE, _NO_STATE, _INVALID_STATE, _STALE_STATE, _OUTSIDE_WORKSPACE = range(7)
_NO_INPUT, _INVALID_INPUT, _STALE_INPUT, _JOINT_LIMIT, _NUMERIC_GUARD = range(7, 12)
assert [int(r) for r in Reason] == list(range(12))


class Limit(enum.IntFlag):
    """Which limits changed a followed request (several may apply in one cycle)."""

    NONE = 0
    WORKSPACE = 1  # position clamped into the box
    REFERENCE_TRANSLATION = 2  # position pulled towards the measured TCP
    REFERENCE_ROTATION = 4  # orientation pulled towards the measured orientation
    STEP_TRANSLATION = 8  # translation per cycle limited
    STEP_ROTATION = 16  # rotation per cycle limited
    GRIPPER = 32  # gripper command clamped into its range


GRIPPER_OPEN = 0.0
GRIPPER_CLOSED = 1.0
_GRIPPER_WORDS = {"open": GRIPPER_OPEN, "close": GRIPPER_CLOSED, "closed": GRIPPER_CLOSED}


def gripper_value(command: float | str) -> float:
    """A gripper command as a number: "open" -> 0.0, "close"/"closed" -> 1.0, numbers as they are.

    Anything else becomes NaN, which the filter rejects as INVALID_INPUT (it never raises on input).
    """
    if isinstance(command, str):
        return _GRIPPER_WORDS.get(command.strip().lower(), float("nan"))
    try:
        return float(command)
    except (TypeError, ValueError):
        return float("nan")


# ----------------------------------------------------------------------------------------------------
# Batched core
# ----------------------------------------------------------------------------------------------------


@dataclass
class RequestBatch:
    """Requested targets for B arms (or B independent streams in a benchmark)."""

    position: np.ndarray  # (B, 3) metres, base frame
    orientation: np.ndarray  # (B, 4) quaternion (x, y, z, w); need not be unit
    gripper: np.ndarray  # (B,) 0 open .. 1 closed
    stamp: np.ndarray  # (B,) seconds; the oldest observation stamp the request was computed from
    valid: np.ndarray | None = None  # (B,) bool; False: no request received yet. None: all valid


@dataclass
class StateBatch:
    """Measured state of B arms."""

    position: np.ndarray  # (B, 3) measured TCP position (current_pose), metres, base frame
    orientation: np.ndarray  # (B, 4) measured TCP orientation (x, y, z, w)
    stamp: np.ndarray  # (B,) seconds
    joint_positions: np.ndarray | None = None  # (B, 7) radians; needed when config.robot != "none"
    robot_mode: np.ndarray | None = None  # (B,) int, franka_msgs robot_mode; None or -1: unknown
    valid: np.ndarray | None = None  # (B,) bool; False: no state received yet. None: all valid


@dataclass
class DecisionBatch:
    """One cycle's output for B arms.  Rows with has_command False must not be sent to the arm."""

    position: np.ndarray  # (B, 3)
    orientation: np.ndarray  # (B, 4) unit, sign-continuous with the previous command
    gripper: np.ndarray  # (B,)
    has_command: np.ndarray  # (B,) bool
    reason: np.ndarray  # (B,) uint8, Reason values
    limits: np.ndarray  # (B,) uint8, Limit flags (0 unless reason is OK)
    joint_near_limit: np.ndarray = field(default=None)  # (B, 7) bool: joints that caused JOINT_LIMIT


def _rows(values: np.ndarray | float, batch: int, width: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    shape = (batch,) if width is None else (batch, width)
    if array.shape != shape:
        try:
            array = np.broadcast_to(array, shape)
        except ValueError:
            raise ValueError(f"expected shape {shape}, got {np.shape(values)}") from None
    return array


def _stale(now: np.ndarray, stamp: np.ndarray, max_age: float, max_future: float) -> np.ndarray:
    age = now - stamp
    return ~((age <= max_age) & (age >= -max_future))  # NaN anywhere -> stale


class BatchSafetyFilter:
    """The safety filter for B independent arms/streams; ``SafetyFilter`` wraps it for one arm.

    State per row: the last emitted command and the e-stop latch.  All methods are vectorised.
    """

    def __init__(self, config: SafetyConfig, batch_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.config = config
        self.batch_size = batch_size
        self._lo = config.workspace.lo
        self._hi = config.workspace.hi
        self._hold_modes = np.array([ROBOT_MODES[m] for m in config.hold_robot_modes], dtype=np.int64)
        self._joint_limits = JOINT_LIMITS.get(config.robot)
        self._prev_pos = np.zeros((batch_size, 3))
        self._prev_quat = np.tile(IDENTITY_QUAT, (batch_size, 1))
        self._prev_grip = np.zeros(batch_size)
        self._has_prev = np.zeros(batch_size, dtype=bool)
        self._estop = np.zeros(batch_size, dtype=bool)

    # -- latches and memory -------------------------------------------------------------------------

    def _mask(self, mask: np.ndarray | None) -> np.ndarray:
        return np.ones(self.batch_size, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)

    def trigger_estop(self, mask: np.ndarray | None = None) -> None:
        """Latch the e-stop (for the rows in ``mask``; all if None).  Only ``reset_estop`` clears it."""
        self._estop |= self._mask(mask)

    def reset_estop(self, mask: np.ndarray | None = None) -> None:
        """Clear the e-stop latch.  The next command continues from the last emitted one."""
        self._estop &= ~self._mask(mask)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget the last command: the next one starts from the measured pose.  The e-stop stays as it is."""
        self._has_prev &= ~self._mask(mask)

    @property
    def estopped(self) -> np.ndarray:
        return self._estop.copy()

    @property
    def last_command(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(position (B,3), orientation (B,4), gripper (B,), has_command (B,)) of the last emitted command."""
        return self._prev_pos.copy(), self._prev_quat.copy(), self._prev_grip.copy(), self._has_prev.copy()

    # -- the cycle ----------------------------------------------------------------------------------

    def step(self, now: np.ndarray | float, request: RequestBatch, state: StateBatch) -> DecisionBatch:
        """Filter one cycle for every row.  ``now`` is the time (seconds, same clock as the stamps)."""
        cfg, batch = self.config, self.batch_size
        with np.errstate(all="ignore"):
            now = _rows(now, batch)
            reason = np.zeros(batch, dtype=np.uint8)

            def hold(mask: np.ndarray, code: int) -> None:
                reason[(reason == _OK) & mask] = code

            hold(self._estop, _ESTOP)

            # measured state
            if state.robot_mode is not None:
                modes = np.broadcast_to(np.asarray(state.robot_mode, dtype=np.int64), (batch,))
                hold((modes[:, None] == self._hold_modes).any(1), _ROBOT_MODE)
            state_valid = self._mask(state.valid)
            hold(~state_valid, _NO_STATE)
            m_pos = _rows(state.position, batch, 3)
            m_quat, m_quat_ok = normalize_quat(_rows(state.orientation, batch, 4))
            m_stamp = _rows(state.stamp, batch)
            m_ok = np.isfinite(m_pos).all(1) & (np.abs(m_pos) <= _MAX_PLAUSIBLE_POSITION_M).all(1) & m_quat_ok
            joints = None
            if self._joint_limits is not None:
                if state.joint_positions is None:
                    hold(np.ones(batch, dtype=bool), _NO_STATE)
                else:
                    joints = _rows(state.joint_positions, batch, 7)
                    m_ok &= np.isfinite(joints).all(1)
                    joints = np.where(m_ok[:, None], joints, 0.0)
            hold(~m_ok, _INVALID_STATE)
            hold(_stale(now, m_stamp, cfg.max_state_age_s, cfg.max_future_stamp_s), _STALE_STATE)
            m_pos = np.where(m_ok[:, None], m_pos, 0.0)

            # where the next command starts from
            start_pos = np.clip(m_pos, self._lo, self._hi)
            outside = norm(m_pos - start_pos) > cfg.start_tolerance_m
            hold(~self._has_prev & outside, _OUTSIDE_WORKSPACE)
            anchor_pos = np.where(self._has_prev[:, None], self._prev_pos, start_pos)
            anchor_quat = np.where(self._has_prev[:, None], self._prev_quat, m_quat)

            # request
            hold(~self._mask(request.valid), _NO_INPUT)
            r_pos = _rows(request.position, batch, 3)
            r_quat, r_quat_ok = normalize_quat(_rows(request.orientation, batch, 4))
            r_grip = _rows(request.gripper, batch)
            r_ok = np.isfinite(r_pos).all(1) & r_quat_ok & np.isfinite(r_grip)
            hold(~r_ok, _INVALID_INPUT)
            hold(_stale(now, _rows(request.stamp, batch), cfg.max_input_age_s, cfg.max_future_stamp_s), _STALE_INPUT)
            r_pos = np.where(r_ok[:, None], r_pos, anchor_pos)
            r_grip = np.where(r_ok, r_grip, cfg.gripper_min)

            # limits
            pos, limits = self._limit_position(r_pos, m_pos, anchor_pos)
            quat, rot_limits = self._limit_orientation(r_quat, m_quat, anchor_quat)
            limits |= rot_limits
            grip = np.clip(r_grip, cfg.gripper_min, cfg.gripper_max)
            limits |= np.where(grip != r_grip, Limit.GRIPPER, 0).astype(np.uint8)

            # joint-limit margin
            near = np.zeros((batch, 7), dtype=bool)
            if joints is not None:
                near = self._joints_pushed_out(joints, pos, quat, m_pos, m_quat, reason == _OK)
                retreat = near.any(1)
                reason[retreat] = _JOINT_LIMIT
                back_pos = self._step_position(anchor_pos, start_pos)[0]
                back_quat = self._step_orientation(anchor_quat, align_quat(m_quat, anchor_quat))[0]
                pos = np.where(retreat[:, None], back_pos, pos)
                quat = np.where(retreat[:, None], back_quat, quat)

            # compose: follow (OK / JOINT_LIMIT) or repeat the last command
            follow = (reason == _OK) | (reason == _JOINT_LIMIT)
            out_pos = np.where(follow[:, None], pos, self._prev_pos)
            out_quat = np.where(follow[:, None], quat, self._prev_quat)
            out_grip = np.where(follow, grip, self._prev_grip)
            broken = follow & ~(np.isfinite(out_pos).all(1) & np.isfinite(out_quat).all(1) & np.isfinite(out_grip))
            if broken.any():
                reason[broken] = _NUMERIC_GUARD
                follow &= ~broken
                out_pos = np.where(follow[:, None], out_pos, self._prev_pos)
                out_quat = np.where(follow[:, None], out_quat, self._prev_quat)
                out_grip = np.where(follow, out_grip, self._prev_grip)
            has_command = follow | self._has_prev
            limits = np.where(reason == _OK, limits, 0).astype(np.uint8)

        self._prev_pos, self._prev_quat, self._prev_grip = out_pos.copy(), out_quat.copy(), out_grip.copy()
        self._has_prev = has_command.copy()
        return DecisionBatch(out_pos, out_quat, out_grip, has_command, reason, limits, near)

    # -- pieces -------------------------------------------------------------------------------------

    def _step_position(self, anchor: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move from anchor towards target by at most the translation step; both inside the box."""
        delta = target - anchor
        length = norm(delta)
        over = length > self.config.max_translation_step_m
        scale = np.where(over, self.config.max_translation_step_m / np.where(over, length, 1.0), 1.0)
        stepped = np.where(over[:, None], anchor + delta * scale[:, None], target)
        return np.clip(stepped, self._lo, self._hi), over

    def _step_orientation(self, anchor: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rotate from anchor towards target by at most the rotation step; output aligned with anchor."""
        angle = quat_angle(anchor, target)
        over = angle > self.config.max_rotation_step_rad
        fraction = np.where(over, self.config.max_rotation_step_rad / np.where(over, angle, 1.0), 1.0)
        stepped = np.where(over[:, None], quat_slerp(anchor, target, fraction), target) if over.any() else target
        stepped = stepped / norm(stepped)[:, None]
        return align_quat(stepped, anchor), over

    def _limit_position(self, request: np.ndarray, measured: np.ndarray, anchor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        in_box = np.clip(request, self._lo, self._hi)
        limits = np.where((in_box != request).any(1), Limit.WORKSPACE, 0).astype(np.uint8)
        offset = in_box - measured
        distance = norm(offset)
        far = distance > cfg.max_reference_distance_m
        scale = np.where(far, cfg.max_reference_distance_m / np.where(far, distance, 1.0), 1.0)
        referenced = np.where(far[:, None], np.clip(measured + offset * scale[:, None], self._lo, self._hi), in_box)
        limits |= np.where(far, Limit.REFERENCE_TRANSLATION, 0).astype(np.uint8)
        stepped, over = self._step_position(anchor, referenced)
        limits |= np.where(over, Limit.STEP_TRANSLATION, 0).astype(np.uint8)
        return stepped, limits

    def _limit_orientation(self, request: np.ndarray, measured: np.ndarray, anchor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        request = align_quat(request, measured)
        angle = quat_angle(measured, request)
        far = angle > cfg.max_reference_angle_rad
        fraction = np.where(far, cfg.max_reference_angle_rad / np.where(far, angle, 1.0), 1.0)
        referenced = np.where(far[:, None], quat_slerp(measured, request, fraction), request) if far.any() else request
        limits = np.where(far, Limit.REFERENCE_ROTATION, 0).astype(np.uint8)
        stepped, over = self._step_orientation(anchor, align_quat(referenced, anchor))
        limits |= np.where(over, Limit.STEP_ROTATION, 0).astype(np.uint8)
        return stepped, limits

    def _joints_pushed_out(
        self, joints: np.ndarray, pos: np.ndarray, quat: np.ndarray, m_pos: np.ndarray, m_quat: np.ndarray, active: np.ndarray
    ) -> np.ndarray:
        """(B, 7) bool: joints within the margin of a limit that the commanded error drives further out.

        Only rows in ``active`` (requests about to be followed) are checked; the Jacobian is computed only
        when some active row has a joint near a limit.
        """
        lower, upper = self._joint_limits
        margin = self.config.joint_limit_margin_rad
        near_lower = (joints - lower < margin) & active[:, None]
        near_upper = (upper - joints < margin) & active[:, None]
        if not (near_lower | near_upper).any():
            return np.zeros_like(near_lower)
        jac, _ = jacobian(joints, self.config.tcp_offset_m)
        error = np.concatenate([pos - m_pos, quat_to_rotvec(quat_multiply(quat, quat_conjugate(m_quat)))], axis=1)
        gram = jac @ jac.transpose(0, 2, 1) + _DLS_DAMPING**2 * np.eye(6)
        dq = (jac.transpose(0, 2, 1) @ np.linalg.solve(gram, error[..., None]))[..., 0]
        return (near_lower & (dq < -_JOINT_MOTION_EPS)) | (near_upper & (dq > _JOINT_MOTION_EPS))


# ----------------------------------------------------------------------------------------------------
# One arm
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetRequest:
    """What the policy asks for this cycle (absolute TCP target in the base frame)."""

    position: np.ndarray  # (3,) metres
    orientation: np.ndarray  # (4,) (x, y, z, w)
    gripper: float | str  # 0 open .. 1 closed, or "open" / "close"
    stamp: float  # seconds: the oldest stamp of the observation this target was computed from


@dataclass(frozen=True)
class MeasuredState:
    """What the arm reports (current_pose, joint states, robot mode)."""

    position: np.ndarray  # (3,) measured TCP position, metres
    orientation: np.ndarray  # (4,) (x, y, z, w)
    stamp: float  # seconds: the oldest stamp of the pieces below
    joint_positions: np.ndarray | None = None  # (7,) radians; required unless config.robot == "none"
    robot_mode: int | None = None  # franka_msgs FrankaRobotState.robot_mode; None: unknown (sim without it)


@dataclass(frozen=True)
class ArmCommand:
    """A command the arm may follow: TCP target pose and gripper command."""

    position: np.ndarray  # (3,) metres, base frame, inside the workspace box
    orientation: np.ndarray  # (4,) unit (x, y, z, w)
    gripper: float  # in [gripper_min, gripper_max]; 0 open .. 1 closed


@dataclass(frozen=True)
class SafetyDecision:
    """The outcome of one cycle.  ``command`` is None only when nothing was ever emitted."""

    command: ArmCommand | None
    reason: Reason
    limits: Limit
    detail: str  # one line for logs / a status topic; "" when reason is OK and no limit applied

    @property
    def held(self) -> bool:
        """True when the request was not followed (any reason but OK)."""
        return self.reason != Reason.OK


class SafetyFilter:
    """The safety filter for one arm: ``step(now, request, state) -> SafetyDecision``.

    Call ``step`` on a timer at the control rate, with the latest request and state (or None when none
    has arrived), not only when a request arrives: that is what makes the watchdog fire when the
    policy stops publishing.
    """

    def __init__(self, config: SafetyConfig):
        self.config = config
        self._core = BatchSafetyFilter(config, batch_size=1)
        self._estop_reason = ""

    def trigger_estop(self, reason: str = "") -> None:
        """Latch the e-stop; every later cycle holds until ``reset_estop``."""
        if not self._core.estopped[0]:
            self._estop_reason = reason
        self._core.trigger_estop()

    def reset_estop(self) -> None:
        """Clear the e-stop latch (an operator's explicit action)."""
        self._core.reset_estop()
        self._estop_reason = ""

    def reset(self) -> None:
        """Forget the last command; the next one starts from the measured pose.  The e-stop stays latched."""
        self._core.reset()

    @property
    def estopped(self) -> bool:
        return bool(self._core.estopped[0])

    @property
    def last_command(self) -> ArmCommand | None:
        pos, quat, grip, has = self._core.last_command
        return ArmCommand(pos[0], quat[0], float(grip[0])) if has[0] else None

    def step(self, now: float, request: TargetRequest | None, state: MeasuredState | None) -> SafetyDecision:
        """Filter one cycle.  ``now`` is the node's current time on the stamps' clock (sim time in sim)."""
        if request is None:
            req = RequestBatch(np.zeros((1, 3)), IDENTITY_QUAT[None], np.zeros(1), np.zeros(1), np.zeros(1, dtype=bool))
        else:
            req = RequestBatch(
                _vector(request.position, 3),
                _vector(request.orientation, 4),
                np.array([gripper_value(request.gripper)]),
                np.array([_scalar(request.stamp)]),
            )
        if state is None:
            st = StateBatch(np.zeros((1, 3)), IDENTITY_QUAT[None], np.zeros(1), np.zeros((1, 7)), None, np.zeros(1, dtype=bool))
        else:
            st = StateBatch(
                _vector(state.position, 3),
                _vector(state.orientation, 4),
                np.array([_scalar(state.stamp)]),
                None if state.joint_positions is None else _vector(state.joint_positions, 7),
                None if state.robot_mode is None else np.array([int(state.robot_mode)]),
            )
        out = self._core.step(np.array([_scalar(now)]), req, st)
        reason, limits = Reason(int(out.reason[0])), Limit(int(out.limits[0]))
        command = ArmCommand(out.position[0].copy(), out.orientation[0].copy(), float(out.gripper[0])) if out.has_command[0] else None
        return SafetyDecision(command, reason, limits, self._detail(now, reason, limits, request, state, out))

    def _detail(self, now, reason, limits, request, state, out) -> str:
        cfg = self.config
        if reason == Reason.OK:
            return "limited: " + ", ".join(f.name.lower() for f in Limit if f and f in limits) if limits else ""
        if reason == Reason.ESTOP:
            return f"e-stop latched{': ' + self._estop_reason if self._estop_reason else ''}; reset it to move"
        if reason == Reason.ROBOT_MODE:
            names = {v: k for k, v in ROBOT_MODES.items()}
            return f"robot mode {names.get(int(state.robot_mode), state.robot_mode)}: holding"
        if reason == Reason.NO_STATE:
            return "no measured pose yet" if state is None else "no joint positions (needed by the joint-limit check)"
        if reason == Reason.INVALID_STATE:
            return "measured pose or joint positions are not finite / plausible"
        if reason == Reason.STALE_STATE:
            return f"measured state is {_scalar(now) - _scalar(state.stamp):.3f} s old (max {cfg.max_state_age_s} s)"
        if reason == Reason.OUTSIDE_WORKSPACE:
            return f"arm at {np.round(_vector(state.position, 3)[0], 3).tolist()} is outside the workspace box; move it inside"
        if reason == Reason.NO_INPUT:
            return "no target received yet"
        if reason == Reason.INVALID_INPUT:
            return f"target rejected (NaN/inf, zero quaternion or bad gripper command {request.gripper!r})"
        if reason == Reason.STALE_INPUT:
            return f"target is {_scalar(now) - _scalar(request.stamp):.3f} s old (max {cfg.max_input_age_s} s)"
        if reason == Reason.JOINT_LIMIT:
            joints = [int(i) + 1 for i in np.flatnonzero(out.joint_near_limit[0])]
            return f"joint(s) {joints} within {cfg.joint_limit_margin_rad} rad of a limit; stepping back to the measured pose"
        return "computed command was not finite; holding the last command"


def _vector(values, length: int) -> np.ndarray:
    """A (1, length) float64 row; anything malformed becomes NaN (rejected by the filter, never raised)."""
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        array = np.full(length, np.nan)
    if array.shape != (length,):
        array = np.full(length, np.nan)
    return array[None]


def _scalar(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
