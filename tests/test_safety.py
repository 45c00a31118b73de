"""The safety filter's pure core: properties over arbitrary input sequences, then each rule on its own."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpds_ros.config import ConfigError
from lpds_ros.safety import (
    GripperGate,
    Limit,
    MeasuredState,
    Reason,
    SafetyConfig,
    SafetyFilter,
    TargetRequest,
    WorkspaceBox,
    load_safety_config,
)
from lpds_ros.safety.franka import JOINT_LIMITS, forward_kinematics, jacobian
from lpds_ros.safety.rotations import matrix_to_quat, quat_angle

REPO = Path(__file__).resolve().parents[1]
READY_Q = np.array([0.0, -np.pi / 4, 0.0, -3 * np.pi / 4, 0.0, np.pi / 2, np.pi / 4])
READY_POS = np.array([0.3069, 0.0, 0.4869])
DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # TCP pointing down, the ready pose's orientation
CONFIG = SafetyConfig()
CONFIG_NO_JOINTS = dataclasses.replace(CONFIG, robot="none")
LO, HI = CONFIG.workspace.lo, CONFIG.workspace.hi
TOL = 1e-9


def ready_state(stamp: float = 0.0, position=READY_POS, orientation=DOWN, mode: int | None = 2) -> MeasuredState:
    return MeasuredState(np.asarray(position, float), np.asarray(orientation, float), stamp, READY_Q, mode)


def request(position, stamp: float = 0.0, orientation=DOWN, gripper=0.0) -> TargetRequest:
    return TargetRequest(np.asarray(position, float), np.asarray(orientation, float), gripper, stamp)


# ----------------------------------------------------------------------------------------------------
# The property: whatever comes in, what goes out is finite, in the box and step-limited.
# ----------------------------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
BAD_VALUES = np.array([NAN, INF, -INF, 1e300, -1e300, 1e-300])
JOINT_LO, JOINT_HI = JOINT_LIMITS["fr3"]

# What each field of a cycle's code word selects; entry 0 is always the normal case, so hypothesis
# shrinks a failing sequence towards normal inputs.  benchmarks/safety_property.py uses the same tables.
EVENTS = ["-"] * 13 + ["estop", "reset_estop", "reset"]
REQUEST_KINDS = ["normal"] * 11 + ["none", "poisoned", "huge", "stale", "normal"]
STATE_KINDS = ["track"] * 10 + ["random", "poisoned", "stale", "none", "track", "track"]
JOINT_KINDS = ["inside"] * 5 + ["beyond", "nan", "inside"]
MODES = [2] * 9 + [0, 1, 3, 4, 5, 6, None]  # franka robot_mode; 2 = MOVE, None = unknown
DTS = [0.05, 0.02, 0.0, 0.3]


def _decode_step(code: int, rng: np.random.Generator, prev, now: float):
    """One cycle's inputs from a hypothesis-drawn code word (the structure) and a seeded rng (the values).

    Drawing one integer per cycle keeps hypothesis' own cost low enough for 10,000 sequences, while
    the code word still picks every kind of input: missing, NaN/inf/huge, stale/future/NaN stamps,
    e-stops, resets, every robot mode, joints at and beyond their limits.
    """
    event, req_kind, state_kind = EVENTS[code % 16], REQUEST_KINDS[(code >> 4) % 16], STATE_KINDS[(code >> 8) % 16]
    joint_kind, mode, dt = JOINT_KINDS[(code >> 12) % 8], MODES[(code >> 15) % 16], DTS[(code >> 19) % 4]
    now += dt

    def poison(values: np.ndarray) -> np.ndarray:
        values = values.copy()
        values.flat[rng.integers(values.size)] = rng.choice(BAD_VALUES)
        return values

    def stale_stamp() -> float:
        return float(rng.choice([now - 0.6, now - 100.0, now + 1.0, NAN, INF, -INF]))

    request = None
    if req_kind != "none":
        pos, quat = rng.uniform(-1.5, 1.5, 3), rng.uniform(-1.0, 1.0, 4)
        grip = rng.choice([rng.uniform(-2, 2), "open", "close", "ajar"]) if rng.random() < 0.3 else rng.uniform(-2, 2)
        stamp = now - rng.uniform(0.0, 0.3)
        if prev is not None and rng.random() < 0.5:  # a small move, as a policy makes
            pos, quat = prev.position + rng.normal(0.0, 0.01, 3), prev.orientation + rng.normal(0.0, 0.03, 4)
        if req_kind == "poisoned":
            pos, quat = (poison(pos), quat) if rng.random() < 0.5 else (pos, poison(quat))
            grip = rng.choice(BAD_VALUES) if rng.random() < 0.2 else grip
        elif req_kind == "huge":
            pos = pos * 1e300
        elif req_kind == "stale":
            stamp = stale_stamp()
        request = TargetRequest(pos, quat, grip, stamp)

    pos, quat, stamp = rng.uniform(-1.5, 1.5, 3), rng.uniform(-1.0, 1.0, 4), now - rng.uniform(0.0, 0.15)
    if state_kind == "track":  # the arm near the last command, or somewhere in the box at start
        pos = prev.position + rng.normal(0.0, 0.03, 3) if prev is not None else rng.uniform(LO, HI)
        quat = prev.orientation + rng.normal(0.0, 0.05, 4) if prev is not None else quat
    elif state_kind == "poisoned":
        pos, quat = (poison(pos), quat) if rng.random() < 0.5 else (pos, poison(quat))
    elif state_kind == "stale":
        stamp = stale_stamp()
    joints = {"inside": lambda: rng.uniform(JOINT_LO, JOINT_HI), "beyond": lambda: rng.uniform(JOINT_LO - 0.2, JOINT_HI + 0.2),
              "nan": lambda: np.full(7, NAN)}[joint_kind]()
    state = None if state_kind == "none" else MeasuredState(pos, quat, stamp, joints, mode)
    return event, request, state, now


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 10,000 examples: ~45 s on an idle 2-core box, far more when it is shared
@settings(max_examples=10_000, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), codes=st.lists(st.integers(0, 2**21 - 1), min_size=1, max_size=8),
       joint_check=st.booleans())
def test_emitted_commands_are_finite_inside_the_box_and_step_limited(seed, codes, joint_check):
    cfg = CONFIG if joint_check else CONFIG_NO_JOINTS
    filt, rng = SafetyFilter(cfg), np.random.default_rng(seed)
    now, prev = 0.0, None  # prev: the last emitted command; None at start and after reset()
    for code in codes:
        event, target, state, now = _decode_step(code, rng, prev, now)
        if event == "estop":
            filt.trigger_estop("test")
        elif event == "reset_estop":
            filt.reset_estop()
        elif event == "reset":
            filt.reset()
            prev = None
        decision = filt.step(now, target, state)
        command = decision.command

        assert decision.reason != Reason.NUMERIC_GUARD
        if filt.estopped:
            assert decision.reason == Reason.ESTOP
        if command is None:
            assert prev is None and decision.held
            continue
        assert np.isfinite(command.position).all() and np.isfinite(command.orientation).all() and math.isfinite(command.gripper)
        assert ((command.position >= LO) & (command.position <= HI)).all()
        assert abs(np.linalg.norm(command.orientation) - 1.0) < TOL
        assert cfg.gripper_min <= command.gripper <= cfg.gripper_max
        if prev is not None:
            assert np.linalg.norm(command.position - prev.position) <= cfg.max_translation_step_m * (1 + TOL)
            assert quat_angle(prev.orientation, command.orientation) <= cfg.max_rotation_step_rad + TOL
            if decision.held and decision.reason != Reason.JOINT_LIMIT:
                assert np.array_equal(command.position, prev.position) and command.gripper == prev.gripper
        else:  # a first command starts at the measured pose, clamped into the box
            start = np.clip(state.position, LO, HI)
            assert np.linalg.norm(command.position - start) <= cfg.max_translation_step_m * (1 + TOL)
        if (decision.reason == Reason.OK and not decision.limits & Limit.STEP_TRANSLATION
                and CONFIG.workspace.contains(state.position)):
            assert np.linalg.norm(command.position - state.position) <= cfg.max_reference_distance_m * (1 + TOL)
        prev = command


# ----------------------------------------------------------------------------------------------------
# Each rule alone
# ----------------------------------------------------------------------------------------------------


def started_filter(config: SafetyConfig = CONFIG) -> SafetyFilter:
    filt = SafetyFilter(config)
    assert filt.step(0.0, request(READY_POS), ready_state()).reason == Reason.OK
    return filt


def test_first_command_starts_at_the_measured_pose():
    filt = SafetyFilter(CONFIG)
    decision = filt.step(0.0, None, ready_state())
    assert decision.reason == Reason.NO_INPUT and decision.command is None
    decision = filt.step(0.0, request(READY_POS + [0.0, 0.0, 0.01]), ready_state())
    assert decision.reason == Reason.OK
    np.testing.assert_allclose(decision.command.position, READY_POS + [0.0, 0.0, 0.01])


def test_no_state_holds_and_says_so():
    decision = SafetyFilter(CONFIG).step(0.0, request(READY_POS), None)
    assert decision.reason == Reason.NO_STATE and decision.command is None and "pose" in decision.detail
    state = MeasuredState(READY_POS, DOWN, 0.0)  # joint check on, joints missing
    assert SafetyFilter(CONFIG).step(0.0, request(READY_POS), state).reason == Reason.NO_STATE
    assert SafetyFilter(CONFIG_NO_JOINTS).step(0.0, request(READY_POS), state).reason == Reason.OK


def test_watchdog_holds_in_the_first_cycle_the_input_is_stale():
    filt = started_filter()
    held = None
    target = request(READY_POS + [0.02, 0.0, 0.0], stamp=0.0)  # the policy publishes once, then dies
    dt = 0.05
    for k in range(1, 30):
        now = k * dt
        decision = filt.step(now, target, ready_state(stamp=now))
        if now - target.stamp <= CONFIG.max_input_age_s + 1e-12:
            assert decision.reason == Reason.OK
            held = decision.command
        else:  # the very first cycle past the age holds, and every later one
            assert decision.reason == Reason.STALE_INPUT, (now, decision)
            np.testing.assert_array_equal(decision.command.position, held.position)
            assert "old" in decision.detail
    fresh = filt.step(2.0, request(READY_POS, stamp=2.0), ready_state(stamp=2.0))
    assert fresh.reason == Reason.OK


@pytest.mark.parametrize("stamp", [-10.0, 0.5, float("nan"), float("inf")])
def test_stale_future_or_nan_stamps_hold(stamp):
    filt = started_filter()
    assert filt.step(0.0, request(READY_POS, stamp=stamp), ready_state()).reason == Reason.STALE_INPUT
    assert filt.step(0.0, request(READY_POS), ready_state(stamp=stamp)).reason == Reason.STALE_STATE


def test_estop_latches_until_reset():
    filt = started_filter()
    filt.trigger_estop("operator")
    before = filt.last_command
    for k in range(1, 10):
        decision = filt.step(0.1 * k, request(READY_POS + [0.05, 0.0, 0.0], stamp=0.1 * k), ready_state(stamp=0.1 * k))
        assert decision.reason == Reason.ESTOP and "operator" in decision.detail
        np.testing.assert_array_equal(decision.command.position, before.position)
    filt.reset()  # a new episode does not clear the e-stop
    assert filt.step(1.0, request(READY_POS, stamp=1.0), ready_state(stamp=1.0)).reason == Reason.ESTOP
    filt.reset_estop()
    assert filt.step(1.1, request(READY_POS, stamp=1.1), ready_state(stamp=1.1)).reason == Reason.OK


@pytest.mark.parametrize("mode,holds", [(4, True), (5, True), (6, True), (2, False), (1, False), (None, False)])
def test_robot_mode_reflex_and_user_stop_hold(mode, holds):
    filt = started_filter()
    decision = filt.step(0.1, request(READY_POS + [0.02, 0.0, 0.0], stamp=0.1), ready_state(stamp=0.1, mode=mode))
    assert (decision.reason == Reason.ROBOT_MODE) == holds
    if holds:
        assert {4: "REFLEX", 5: "USER_STOPPED", 6: "AUTOMATIC_ERROR_RECOVERY"}[mode] in decision.detail
        np.testing.assert_array_equal(decision.command.position, READY_POS)
    after = filt.step(0.2, request(READY_POS + [0.02, 0.0, 0.0], stamp=0.2), ready_state(stamp=0.2, mode=2))
    assert after.reason == Reason.OK


@pytest.mark.parametrize(
    "position,orientation,gripper",
    [
        ([float("nan"), 0.0, 0.4], DOWN, 0.0),
        ([0.4, float("inf"), 0.4], DOWN, 0.0),
        ([0.4, 0.0, 0.4], [0.0, 0.0, 0.0, 0.0], 0.0),
        ([0.4, 0.0, 0.4], [float("nan"), 0.0, 0.0, 1.0], 0.0),
        ([0.4, 0.0, 0.4], DOWN, float("nan")),
        ([0.4, 0.0, 0.4], DOWN, "ajar"),
        ([0.4, 0.0], DOWN, 0.0),  # wrong size
    ],
)
def test_bad_input_holds_the_last_safe_target(position, orientation, gripper):
    filt = started_filter()
    decision = filt.step(0.0, TargetRequest(position, orientation, gripper, 0.0), ready_state())
    assert decision.reason == Reason.INVALID_INPUT
    np.testing.assert_array_equal(decision.command.position, READY_POS)


def test_bad_state_holds():
    filt = started_filter()
    for state in (ready_state(position=[float("nan"), 0, 0]), ready_state(orientation=[0, 0, 0, 0]),
                  MeasuredState(READY_POS, DOWN, 0.0, np.full(7, np.nan))):
        assert filt.step(0.0, request(READY_POS), state).reason == Reason.INVALID_STATE


def test_huge_target_is_clamped_into_the_box_and_walks_there_at_the_step_limit():
    cfg = dataclasses.replace(CONFIG_NO_JOINTS, max_reference_distance_m=10.0)
    filt = started_filter(cfg)
    previous = READY_POS
    for k in range(1, 40):
        decision = filt.step(0.0, request([1e300, -1e300, 1e300]), ready_state(position=previous))
        assert decision.reason == Reason.OK and decision.limits & Limit.WORKSPACE
        assert np.linalg.norm(decision.command.position - previous) <= cfg.max_translation_step_m * (1 + TOL)
        previous = decision.command.position
    np.testing.assert_allclose(previous, [HI[0], LO[1], HI[2]])


def test_reference_limiting_stops_windup_of_a_blocked_arm():
    filt = started_filter(CONFIG_NO_JOINTS)
    blocked = READY_POS  # the arm does not move, whatever it is told
    for k in range(50):
        decision = filt.step(0.0, request(READY_POS + [0.3, 0.0, 0.0]), ready_state(position=blocked))
    assert np.linalg.norm(decision.command.position - blocked) == pytest.approx(CONFIG.max_reference_distance_m)
    assert decision.limits & Limit.REFERENCE_TRANSLATION
    # when the arm is pushed away, the target follows it at the step speed instead of jumping
    pushed = READY_POS + [0.0, 0.2, 0.0]
    last = decision.command.position
    decision = filt.step(0.0, request(READY_POS), ready_state(position=pushed))
    assert np.linalg.norm(decision.command.position - last) == pytest.approx(CONFIG.max_translation_step_m)


def test_rotation_step_and_reference_limits():
    filt = started_filter(CONFIG_NO_JOINTS)
    flipped = np.array([0.0, 0.0, 0.0, 1.0])  # TCP pointing up: a half turn from DOWN
    decision = filt.step(0.0, request(READY_POS, orientation=flipped), ready_state())
    assert quat_angle(DOWN, decision.command.orientation) == pytest.approx(CONFIG.max_rotation_step_rad)
    assert decision.limits & Limit.STEP_ROTATION and decision.limits & Limit.REFERENCE_ROTATION
    for _ in range(20):  # the arm stays put: the target never rotates past the reference limit
        decision = filt.step(0.0, request(READY_POS, orientation=flipped), ready_state())
    assert quat_angle(DOWN, decision.command.orientation) == pytest.approx(CONFIG.max_reference_angle_rad)


def test_gripper_words_and_range():
    filt = started_filter()
    assert filt.step(0.0, request(READY_POS, gripper="close"), ready_state()).command.gripper == 1.0
    assert filt.step(0.0, request(READY_POS, gripper="open"), ready_state()).command.gripper == 0.0
    decision = filt.step(0.0, request(READY_POS, gripper=7.0), ready_state())
    assert decision.command.gripper == 1.0 and decision.limits & Limit.GRIPPER


def test_start_outside_the_box_holds_until_the_arm_is_inside():
    filt = SafetyFilter(CONFIG)
    outside = ready_state(position=[0.0, 0.0, 0.9])
    decision = filt.step(0.0, request(READY_POS), outside)
    assert decision.reason == Reason.OUTSIDE_WORKSPACE and decision.command is None and "outside" in decision.detail
    assert filt.step(0.0, request(READY_POS), ready_state()).reason == Reason.OK


def _straight_arm_config():
    """A configuration with joint 4 near its upper limit (arm almost stretched) and a box that holds it."""
    q = np.array([0.0, 0.6, 0.0, -0.2, 0.0, 1.2, np.pi / 4])
    _, tcp = forward_kinematics(q[None])
    box = WorkspaceBox(min_xyz=(-1.2, -1.2, -0.5), max_xyz=(1.2, 1.2, 1.4))
    cfg = dataclasses.replace(CONFIG, workspace=box)
    return q, tcp[0, :3, 3], matrix_to_quat(tcp[0, :3, :3]), cfg


def test_joint_near_its_limit_may_move_back_but_not_further_out():
    q, pos, quat, cfg = _straight_arm_config()
    state = MeasuredState(pos, quat, 0.0, q, 2)

    def pose_with_joint4(offset: float) -> TargetRequest:
        _, tcp = forward_kinematics((q + np.eye(7)[3] * offset)[None])
        return request(tcp[0, :3, 3], orientation=matrix_to_quat(tcp[0, :3, :3]))

    filt = SafetyFilter(cfg)
    assert filt.step(0.0, request(pos, orientation=quat), state).reason == Reason.OK
    decision = filt.step(0.0, pose_with_joint4(+0.03), state)  # towards joint 4's upper limit (-0.1518)
    assert decision.reason == Reason.JOINT_LIMIT and "[4]" in decision.detail
    np.testing.assert_allclose(decision.command.position, pos, atol=1e-12)  # steps back to the measured pose
    assert filt.step(0.0, pose_with_joint4(-0.03), state).reason == Reason.OK  # away from it: allowed


def test_kinematics_ready_pose_and_jacobian():
    _, tcp = forward_kinematics(READY_Q[None])
    np.testing.assert_allclose(tcp[0, :3, 3], READY_POS, atol=1e-3)
    assert quat_angle(matrix_to_quat(tcp[0, :3, :3]), DOWN) < 1e-9
    q = np.random.default_rng(0).uniform(-1, 1, (3, 7))
    jac, tcp = jacobian(q)
    for i in range(7):
        dq = np.zeros(7)
        dq[i] = 1e-7
        _, moved = forward_kinematics(q + dq)
        np.testing.assert_allclose((moved[:, :3, 3] - tcp[:, :3, 3]) / 1e-7, jac[:, :3, i], atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# Config files and the gripper gate
# ----------------------------------------------------------------------------------------------------


def test_shipped_files_load():
    cfg = load_safety_config(REPO / "config/safety.yaml", REPO / "calibration/workspace.yaml")
    assert cfg.workspace.contains(READY_POS) and cfg.robot == "fr3"


@pytest.mark.parametrize(
    "text,field",
    [
        ("max_translation_step_m: -0.1\n", "max_translation_step_m"),
        ("max_translation_stp_m: 0.1\n", "max_translation_stp_m"),
        ("robot: ur5\n", "robot"),
        ("hold_robot_modes: [REFLEX, NAPPING]\n", "hold_robot_modes"),
        ("workspace: {min_xyz: [0, 0, 0]}\n", "workspace"),
        ("gripper_min: 0.9\ngripper_max: 0.1\n", "gripper_min"),
    ],
)
def test_bad_safety_yaml_fails_with_one_line_naming_the_field(tmp_path, text, field):
    path = tmp_path / "safety.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_safety_config(path)
    assert field in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["min_xyz: [0.5, 0, 0]\nmax_xyz: [0.4, 1, 1]\n", "min_xyz: [0, 0]\n", "max_xyz: [1, .nan, 1]\n"])
def test_bad_workspace_yaml_fails_with_one_line(tmp_path, text):
    path = tmp_path / "workspace.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_safety_config(None, path)
    assert "xyz" in str(info.value) and "\n" not in str(info.value)


def test_gripper_gate_sends_goals_only_on_change():
    gate = GripperGate()
    sent = [gate.update(c) for c in [0.0, 0.1, 0.55, 0.7, 0.9, 0.5, 0.45, 0.3, 0.0, float("nan")]]
    assert sent == ["open", None, None, "close", None, None, None, "open", None, None]
    gate.goal_failed()  # the open goal was aborted: retried after the cooldown, not at every tick
    retries = [gate.update(0.0) for _ in range(gate.retry_cycles + 1)]
    assert retries.count("open") == 1 and retries.index("open") == gate.retry_cycles - 1
