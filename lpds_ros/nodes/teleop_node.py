"""teleop_node: keyboard / SpaceMouse teleoperation through the safety filter, recording demos.

Subscribes  /lpds/observation (labelled vector, from perception_node), /lpds/episode (sim episode events)
Publishes   /lpds/action_raw (the same labelled vector as policy_node's: target x y z qx qy qz qw, gripper,
            task action), stamped with the observation's stamp -> safety_filter_node -> the arm;
            /lpds/estop (Bool true on the e-stop key); /lpds/reset (Int64 seed, ``sim_episodes`` only)
Records     finished episodes (observation, task action, success flag) to ``out`` in the project's HDF5
            demo layout (``DemoAppender``: each episode appended atomically, never half-written), and with
            ``bag_dir`` a rosbag2 (MCAP) of the raw topics in ``bag_topics`` (config/topics.yaml keys).

It takes the policy's place in the graph (never run both): each observation produces exactly one
action_raw, so the lockstep sim advances with it, and the safety filter limits a teleoperated target
exactly as a policy's.  The task action comes from ``lpds_ros.teleop.TeleopCore`` (keys, a SpaceMouse),
the target from the policy's own ``DeltaTargetIntegrator``.

Input is injectable (``keys=``, ``device=``): the console script and ``lpds teleop`` read the terminal
in cbreak mode (no X server), tests pass ``ScriptedKeys``.  Keys are polled on every observation and on a
wall-clock timer (``key_poll_hz``), so episode keys work while no observation flows (the sim between
episodes).  ``ScriptedKeys`` releases a key due at step k before the action of observation k is
computed, whichever poll sees it first, so a scripted run is deterministic under lockstep sim time.

Episodes: ``b`` begins one (``sim_episodes``: resets the sim with seed ``seed + n`` and records from the
sim's start event), ``y`` / ``n`` save it as a success / failure, ``x`` discards it, and the sim's end
event saves it with the sim's success flag.  ``q`` quits (an unfinished episode is discarded).
Observations that arrive after ``b`` or after the sim's end event wait for the next start event (the
first state can overtake it), so each saved demo starts at its episode's first state.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Int64, String

from lpds_ros.config import ConfigError
from lpds_ros.nodes import convert
from lpds_ros.nodes.params import (
    check_choice,
    check_positive,
    declare_params,
    param,
    run_node,
)
from lpds_ros.nodes.topics import Topics, load_topics
from lpds_ros.runtime.chunking import DeltaTargetIntegrator
from lpds_ros.teleop.bag import DEFAULT_BAG_TOPICS, TOPIC_TYPES
from lpds_ros.teleop.core import HELP, EpisodeRecorder, TeleopCore, parse_axes


@dataclass(frozen=True)
class TeleopParams:
    topics_file: str = param("", "names YAML (empty: the package's config/topics.yaml)")
    task: str = param("franka-lift", "task (observation layout of the recorded demos)")
    out: str = param("", "HDF5 demo file the episodes are appended to (empty: teleoperate without recording)")
    sim_episodes: bool = param(False, "b resets the sim (reset_episode) and recording starts at its episode start event")
    seed: int = param(0, "sim_episodes: the n-th episode (from 0) is reset with seed + n")
    speed: float = param(0.3, "|task action| of a key press in (0, 1] (x action_scale_m per step)")
    hold_steps: int = param(3, "control steps one key press keeps moving")
    keys_script: str = param("", "scripted keys 'STEP:KEYS ...' instead of the terminal (demos, tests)")
    keyboard: bool = param(True, "read keys from this process's terminal (cbreak mode) unless keys_script is set")
    spacemouse: str = param("auto", "auto (use one when present), on (required) or off")
    spacemouse_axes: str = param("y,-x,z", "base x, y, z <- device axes (signed), e.g. 'y,-x,z'")
    deadzone: float = param(0.1, "SpaceMouse deflections below this read as 0")
    key_poll_hz: float = param(50.0, "wall-clock rate of the key poll between observations")
    action_scale_m: float = param(0.05, "metres the target moves per step at |action| = 1 (the task's)")
    max_lead_m: float = param(0.02, "the target stays within this (per axis) of the measured TCP (the task's)")
    target_low: list = param([0.25, -0.35, 0.01], "the task's target box, lower corner (base frame)")
    target_high: list = param([0.75, 0.35, 0.40], "the task's target box, upper corner")
    bag_dir: str = param("", "record a rosbag2 (MCAP) of bag_topics into this new directory (empty: no bag)")
    bag_topics: list = param(list(DEFAULT_BAG_TOPICS), "config/topics.yaml keys of the topics to bag")

    def __post_init__(self) -> None:
        check_choice(self, "spacemouse", ("auto", "on", "off"))
        check_positive(self, "key_poll_hz")
        check_positive(self, "hold_steps")
        unknown = sorted(set(self.bag_topics) - set(TOPIC_TYPES))
        if unknown:
            raise ConfigError(f"TeleopParams.bag_topics: unknown key(s) {unknown}; valid: {sorted(TOPIC_TYPES)}")


class TeleopNode(Node):
    def __init__(self, keys=None, device=None, on_quit: Callable[[], None] | None = None, **kwargs):
        super().__init__("teleop_node", **kwargs)
        from lpds_ros.envs import env_class

        self.params = p = declare_params(self, TeleopParams)
        self.topics = t = load_topics(p.topics_file or None)
        self.layout = env_class(p.task).layout()
        self._eef = _slice(self.layout, "robot0_eef_pos")
        self.core = TeleopCore(speed=p.speed, hold_steps=p.hold_steps, deadzone=p.deadzone, axes=parse_axes(p.spacemouse_axes))
        self.integrator = DeltaTargetIntegrator(p.action_scale_m, p.max_lead_m, p.target_low, p.target_high)
        self.appender = None
        if p.out:
            from lpds_ros.data.hdf5 import DemoAppender

            self.appender = DemoAppender(p.out, self.layout, {"task": p.task, "kwargs": {}, "source": "teleop"})
            if self.appender.recovered:
                self.get_logger().warning(self.appender.recovered)
        self.recorder = EpisodeRecorder(self._append, wait_for_episode=p.sim_episodes)
        self.keys, self.device = keys, device
        self._owns_inputs = keys is None and device is None
        if self.keys is None:
            from lpds_ros.teleop.inputs import ScriptedKeys, TerminalKeys

            self.keys = ScriptedKeys.parse(p.keys_script) if p.keys_script else (TerminalKeys() if p.keyboard else None)
        if self._owns_inputs and p.spacemouse != "off":  # an injected input means: no real device
            from lpds_ros.teleop.inputs import open_spacemouse

            self.device, why = open_spacemouse()
            if self.device is None:
                if p.spacemouse == "on":
                    raise ConfigError(f"teleop_node: spacemouse: on, but {why}")
                self.get_logger().info(f"{why}; keyboard only")
        if self.keys is None and self.device is None:
            raise ConfigError("teleop_node: no input: enable the keyboard, give keys_script, or connect a SpaceMouse")
        self.on_quit = on_quit
        self.quit_requested = False
        self.messages: list[str] = []  # what the operator was told, in order (tests read it)
        self.steps = 0
        self._lock = threading.RLock()
        self._checked_labels = False
        self._last_stamp = -np.inf
        self._episode_start: float | None = None
        self._episode_end = np.inf
        self._active_start: float | None = None
        # a new episode's first observation can overtake its start event (one topic each, no order across):
        # kept here and acted on when the event arrives, so the demo keeps its first step
        self._early: JointState | None = None

        self.pub_action = self.create_publisher(JointState, t.action_raw, 10)
        self.pub_estop = self.create_publisher(Bool, t.estop, 10)
        self.pub_reset = self.create_publisher(Int64, t.reset_episode, 10) if p.sim_episodes else None
        self.create_subscription(JointState, t.observation, self._on_observation, 10)
        self.create_subscription(String, t.episode, self._on_episode, 10)
        self._wall_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(1.0 / p.key_poll_hz, self._on_timer, clock=self._wall_clock)
        self.bag = self._open_bag(p, t) if p.bag_dir else None
        self._say(HELP)
        if self.device is not None:
            self._say("SpaceMouse: translation moves the target, button 0 toggles the gripper")

    # ------------------------------------------------------------------ recording
    def _append(self, obs, actions, rewards, dones, success) -> str:
        if self.appender is None:
            return "not written: no out file"
        name = self.appender.append(obs, actions, rewards, dones, success)
        return f"{self.appender.path}:{name}"

    def _open_bag(self, p: TeleopParams, t: Topics):
        from lpds_ros.teleop.bag import BagWriter, message_class

        bag = BagWriter(p.bag_dir)
        for key in p.bag_topics:
            msgtype = TOPIC_TYPES[key]
            name = self.resolve_topic_name(getattr(t, key))
            bag.add_topic(name, msgtype)
            self.create_subscription(message_class(msgtype), name,
                                     lambda data, name=name: bag.write(name, self.get_clock().now().nanoseconds, data), 50, raw=True)
        self._say(f"recording a rosbag2 (MCAP) of {len(p.bag_topics)} topics to {p.bag_dir}")
        return bag

    def _say(self, message: str | None) -> None:
        if message:
            self.messages.append(message)
            self.get_logger().info(message)

    # ------------------------------------------------------------------ input
    def _poll(self) -> None:
        """Keys due now (caller holds the lock)."""
        if self.keys is None:
            return
        for key in self.keys.read_keys(self.steps):
            command = self.core.key(key)
            if command is not None:
                self._control(command)

    def _control(self, command: str) -> None:
        r = self.recorder
        try:
            if command == "start":
                self._say(r.start())
                if self.pub_reset is not None and r.state == r.WAITING:
                    self.pub_reset.publish(Int64(data=int(self.params.seed + r.started - 1)))
            elif command in ("success", "failure"):
                self._say(r.save(command == "success"))
            elif command == "discard":
                self._say(r.discard() or "no episode to discard")
            elif command == "estop":
                self.pub_estop.publish(Bool(data=True))
                self._say(f"E-STOP sent on {self.topics.estop} (latched in the safety filter; clear it with "
                          f"`ros2 topic pub --once {self.topics.estop_reset} std_msgs/msg/Empty`)")
            elif command == "quit":
                self._say(r.discard("quit before it was saved"))
                self.quit_requested = True
                if self.on_quit is not None:
                    self.on_quit()
        except ConfigError:
            raise
        except Exception as exc:  # a failed write (disk full, bad file): say so, keep teleoperating
            self._say(f"error: {type(exc).__name__}: {exc}")

    def _on_timer(self) -> None:
        with self._lock:
            self._poll()

    # ------------------------------------------------------------------ the control step
    def _on_episode(self, msg: String) -> None:
        event = convert.episode_event_from_msg(msg.data)
        if event is None:
            return
        early = None
        with self._lock:
            if event["event"] == "start":
                self._episode_start = event["stamp"]
                self._episode_end = np.inf
                self._say(self.recorder.episode_started(self._episode_start))
                early, self._early = self._early, None
            else:
                self._episode_end = event["stamp"]
                try:  # the end state's observation may have come first: no action of it was executed
                    self._say(self.recorder.episode_ended(bool(event.get("success", False)), end_stamp=event["stamp"]))
                except Exception as exc:
                    self._say(f"error: {type(exc).__name__}: {exc}")
        if early is not None:
            self._on_observation(early)  # dropped there if it predates this episode

    def _on_observation(self, msg: JointState) -> None:
        labels, values, stamp = convert.vector_from_msg(msg)
        if not self._checked_labels:
            if convert.labels_to_layout(labels) != self.layout:
                self.get_logger().error(f"observation layout {convert.labels_to_layout(labels)} is not the task's {self.layout}",
                                        throttle_duration_sec=5.0)
                return
            self._checked_labels = True
        obs = values.astype(np.float32)
        with self._lock:
            if stamp >= self._episode_end - 1e-9 or self.recorder.state == self.recorder.WAITING:
                # after the end, or after b asked for a reset: the next episode's state, ahead of its start event
                # (the lockstep sim waits for its command; the reset breaks that wait if this is an old state)
                self._early = msg
                return
            if self._episode_start is not None and self._episode_start != self._active_start:
                if stamp < self._episode_start - 1e-9:
                    return  # from the previous episode
                self._active_start = self._episode_start
                self.integrator.reset()  # a new sim episode: start from the measured TCP, gripper open
                self.core.reset()
                self._last_stamp = -np.inf
            if stamp <= self._last_stamp:
                return
            self._last_stamp = stamp
            self._poll()
            if self.device is not None:
                self.core.device(self.device.read())
            action = self.core.action()
            target, quat, gripper = self.integrator.step(action, obs[self._eef])
            self.pub_action.publish(convert.action_raw_msg(target, quat, gripper, action, stamp))
            self.recorder.record(obs, action, stamp)
            self.steps += 1

    def close(self) -> None:
        with self._lock:
            self._say(self.recorder.discard("stopped before it was saved"))
            if self.bag is not None:
                self.bag.close()
                self.bag = None
            for source in (self.keys, self.device):
                if source is not None and self._owns_inputs:
                    source.close()


def _slice(layout: dict, key: str) -> slice:
    start = 0
    for k, size in layout.items():
        if k == key:
            return slice(start, start + size)
        start += size
    raise ConfigError(f"teleop_node: the observation layout has no {key!r} (needed for the target)")


def main(args=None) -> int:
    import rclpy

    return run_node(lambda: TeleopNode(on_quit=lambda: rclpy.try_shutdown()), "teleop_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
