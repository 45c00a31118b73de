"""Teleoperation cores without ROS (issue 6): key mapping, the episode recorder, atomic episode appends,
and a recording process killed with SIGKILL leaving a readable demo file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from lpds_ros.data.hdf5 import (
    DatasetError,
    DemoAppender,
    DemoWriter,
    load_demos,
    recover_demo_file,
)
from lpds_ros.errors import LpdsError
from lpds_ros.teleop import EpisodeRecorder, ScriptedKeys, TeleopCore, parse_axes

LAYOUT = {"robot0_eef_pos": 3, "object_pos": 3, "robot0_gripper_width": 1}
META = {"task": "franka-lift", "kwargs": {}}


def _drive(core: TeleopCore, keys: ScriptedKeys, recorder: EpisodeRecorder, steps: int) -> list[str]:
    """The node's control step without ROS: keys due now, then the action, then the recording."""
    said = []
    for step in range(steps):
        for key in keys.read_keys(step):
            command = core.key(key)
            if command in ("success", "failure"):
                said.append(recorder.save(command == "success"))
            elif command == "start":
                said.append(recorder.start())
            elif command == "discard":
                said.append(recorder.discard())
        action = core.action()
        recorder.record(np.full(7, step, np.float32), action, float(step))
    return said


def test_keys_map_to_the_task_action_with_holds_gripper_and_speed():
    core = TeleopCore(speed=0.3, hold_steps=2)
    assert core.key("w") is None and core.key("f") is None
    np.testing.assert_allclose(core.action(), [0.3, 0, -0.3, -1.0], atol=1e-6)
    np.testing.assert_allclose(core.action(), [0.3, 0, -0.3, -1.0], atol=1e-6)
    np.testing.assert_allclose(core.action(), [0, 0, 0, -1.0])  # the hold ran out
    core.key(" ")
    core.key("d")
    core.key("+")
    np.testing.assert_allclose(core.action(), [0, -0.4, 0, 1.0], atol=1e-6)  # closed, faster
    assert [core.key(k) for k in "bynxeq"] == ["start", "success", "failure", "discard", "estop", "quit"]
    assert core.key("?") is None


def test_spacemouse_state_deadzone_axes_and_button_edge():
    core = TeleopCore(speed=0.3, deadzone=0.1, axes=parse_axes("y,-x,z"))
    core.device(SimpleNamespace(x=0.05, y=1.0, z=-0.55, buttons=[1, 0]))
    np.testing.assert_allclose(core.action(), [1.0, 0.0, -0.5, 1.0], atol=1e-6)  # base x <- device y; button 0 closes
    core.device(SimpleNamespace(x=0.55, y=0.0, z=0.0, buttons=[1, 0]))  # still held: no second toggle
    np.testing.assert_allclose(core.action(), [0.0, -0.5, 0.0, 1.0], atol=1e-6)
    core.device(SimpleNamespace(x=0.0, y=0.0, z=0.0, buttons=[0, 0]))
    core.device(SimpleNamespace(x=0.0, y=0.0, z=0.0, buttons=[1, 0]))
    assert core.action()[3] == -1.0
    with pytest.raises(LpdsError, match="three of x, y, z"):
        parse_axes("x,x,z")


def test_scripted_recording_saves_valid_episodes_and_a_discarded_one_leaves_no_trace(tmp_path):
    path = tmp_path / "teleop.hdf5"
    appender = DemoAppender(path, LAYOUT, META)
    recorder = EpisodeRecorder(appender.append)
    keys = ScriptedKeys.parse("0:b 2:r 3:r 6:y 8:b 9:ww 12:x 14:b 15:_ 18:n")
    said = _drive(TeleopCore(hold_steps=1), keys, recorder, 20)
    assert keys.done and recorder.saved == 2 and recorder.discarded == 1, said
    demos = load_demos(path)
    assert [len(e) for e in demos.episodes] == [6, 4] and [e.success for e in demos.episodes] == [True, False]
    first, second = demos.episodes
    np.testing.assert_array_equal(first.obs[:, 0], np.arange(6))  # steps 0..5: the 'y' at step 6 ends it
    np.testing.assert_allclose(first.actions[:, 2], [0, 0, 0.3, 0.3, 0, 0], atol=1e-6)
    assert first.rewards[-1] == 1.0 and first.dones[-1] and not first.dones[:-1].any()
    np.testing.assert_array_equal(second.obs[:, 0], np.arange(14, 18))  # the discarded steps 8..11 are nowhere
    assert list(second.actions[:, 3]) == [-1.0, 1.0, 1.0, 1.0] and second.rewards.sum() == 0.0
    with h5py.File(path) as f:
        assert sorted(f["data"].keys()) == ["demo_0", "demo_1"] and f["data"].attrs["total"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teleop.hdf5"]  # no temporary copies left


def test_the_end_state_recorded_before_the_end_event_is_not_saved():
    """The sim's final state can reach the recorder before its end event; its action was never executed."""
    saved = []
    recorder = EpisodeRecorder(lambda obs, actions, *rest: saved.append(len(actions)) or "", wait_for_episode=True)
    for order in ("state first", "event first"):
        recorder.start()
        recorder.episode_started(1.0)
        for stamp in (1.0, 1.05):
            assert recorder.record(np.zeros(3), np.zeros(4), stamp)
        if order == "state first":
            assert recorder.record(np.zeros(3), np.zeros(4), 1.1)
        assert "saved 2 steps" in recorder.episode_ended(True, end_stamp=1.1)
    assert saved == [2, 2]


def test_appending_continues_a_collect_file_and_rejects_another_layout(tmp_path):
    path = tmp_path / "demos.hdf5"
    rng = np.random.default_rng(0)
    with DemoWriter(path, LAYOUT, META) as w:
        w.add_episode(rng.normal(size=(5, 7)), rng.uniform(-1, 1, (5, 4)), np.zeros(5), np.zeros(5, bool), False)
    appender = DemoAppender(path, LAYOUT, META)
    assert appender.append(rng.normal(size=(3, 7)), rng.uniform(-1, 1, (3, 4)), np.zeros(3), np.zeros(3, bool), True) == "demo_1"
    assert [len(e) for e in load_demos(path).episodes] == [5, 3]
    with pytest.raises(DatasetError, match="observation layout"):
        DemoAppender(path, {"robot0_eef_pos": 3}, META)
    with pytest.raises(DatasetError, match="empty episode"):
        appender.append(np.zeros((0, 7)), np.zeros((0, 4)), [], [], True)
    assert len(load_demos(path).episodes) == 2  # a refused append changed nothing


_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from lpds_ros.data.hdf5 import DemoAppender
    from lpds_ros.teleop import EpisodeRecorder, ScriptedKeys, TeleopCore

    layout = {"robot0_eef_pos": 3, "object_pos": 3, "robot0_gripper_width": 1}
    appender = DemoAppender(sys.argv[1], layout, {"task": "franka-lift", "kwargs": {}})
    if appender.recovered:
        print("recovered:", appender.recovered, flush=True)
    recorder, core = EpisodeRecorder(appender.append), TeleopCore()
    rng = np.random.default_rng(int(sys.argv[2]))
    step = 0
    while True:  # record episodes of 40 steps for ever, each saved as soon as it ends
        keys = ScriptedKeys([(step, "b"), (step + 10, "rrr"), (step + 40, "y")])
        for _ in range(41):
            for key in keys.read_keys(step):
                command = core.key(key)
                if command == "start":
                    recorder.start()
                elif command == "success":
                    print("saved", recorder.save(True), flush=True)
            recorder.record(rng.normal(size=7), core.action(), float(step))
            step += 1
""")


@pytest.mark.timeout(120)
def test_sigkill_mid_recording_leaves_a_readable_file(tmp_path):
    """A real recording process is SIGKILLed at random instants (most of its time is spent appending);
    every time, the file reopens with load_demos (after the recovery step) holding whole episodes only."""
    path = tmp_path / "killed.hdf5"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    rng = np.random.default_rng(1)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    previous = 0
    recovered = []
    for attempt in range(4):
        child = subprocess.Popen([sys.executable, str(script), str(path), str(attempt)], stdout=subprocess.PIPE, text=True, env=env)
        saved = 0
        deadline = time.monotonic() + 60
        while saved < 3 and time.monotonic() < deadline:  # a few episodes of this process first
            line = child.stdout.readline()
            if line.startswith("recovered:"):
                recovered.append(line)
            saved += line.startswith("saved")
        assert saved == 3, "the child did not record"
        time.sleep(float(rng.uniform(0.0, 0.05)))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        rest = child.stdout.read()
        child.stdout.close()
        saved += sum(line.startswith("saved") for line in rest.splitlines())
        message = recover_demo_file(path)
        if message:
            recovered.append(message)
            assert len(message.splitlines()) == 1 and "intact" in message
        demos = load_demos(path)  # validates every group it reads
        n = len(demos.episodes)
        assert previous + saved <= n <= previous + saved + 1  # the killed append either landed whole or not at all
        assert all(len(e) == 40 and e.success for e in demos.episodes)
        np.testing.assert_allclose(demos.episodes[-1].actions[10:13, 2], 0.3, atol=1e-6)
        previous = n
    print(f"{previous} episodes after 4 kills; recovery steps: {recovered}")
    with h5py.File(path) as f:
        names = sorted(f["data"].keys(), key=lambda name: int(name.split("_")[1]))
    assert names == [f"demo_{i}" for i in range(previous)]  # numbering continued across the kills
