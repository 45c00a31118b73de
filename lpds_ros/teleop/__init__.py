"""Teleoperation cores (no ROS): key / SpaceMouse -> task action, the episode recorder, input sources and
the rosbag2 writer.  ``lpds_ros.nodes.teleop_node`` wraps them; ``lpds teleop`` starts it."""
from lpds_ros.teleop.core import (
           CONTROL_COMMANDS,
           HELP,
           KEYMAP,
           EpisodeRecorder,
           TeleopCore,
           parse_axes,
)
from lpds_ros.teleop.inputs import ScriptedKeys, TerminalKeys, open_spacemouse

__all__ = ["CONTROL_COMMANDS", "HELP", "KEYMAP", "EpisodeRecorder", "ScriptedKeys", "TeleopCore", "TerminalKeys",
           "open_spacemouse", "parse_axes"]
