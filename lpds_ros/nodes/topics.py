"""Every topic and action name of the graph, from one YAML (config/topics.yaml), as a dataclass.

No node spells a topic name: each takes a ``Topics`` loaded with ``load_topics`` (every key required, unknown
keys rejected, names checked against the ROS 2 name rules), so the sim and the robot differ only in files.
``package_file`` finds a file shipped with the package: the repository's copy in a source tree, else the
colcon/pip-installed ``share/lpds_ros``.
"""
from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from lpds_ros.config import ConfigError, load_config

_REPO_ROOT = Path(__file__).resolve().parents[2]
# A ROS 2 topic/action name: tokens of [A-Za-z0-9_] not starting with a digit, separated by "/", optional
# leading "/" or "~/"; no "//" and no trailing "/".
_NAME = re.compile(r"^(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Topics:
    """Topic and action names (see config/topics.yaml for types and who publishes what).  No defaults:
    a file that misses a key is an error, so the YAML is the one place a name is written."""

    target_pose: str
    current_pose: str
    joint_states: str
    robot_state: str
    error_recovery: str
    gripper_homing: str
    gripper_move: str
    gripper_grasp: str
    gripper_joint_states: str
    object_pose: str
    camera_image: str
    observation: str
    action_raw: str
    estop: str
    estop_reset: str
    recover: str
    safety_status: str
    reset_episode: str
    episode: str
    sim_fault: str
    clock: str
    step_report: str
    transition: str
    steering_weights: str
    steering_status: str

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str) or not _NAME.match(value):
                raise ConfigError(f"Topics.{f.name} = {value!r} is not a valid ROS 2 topic/action name")


def package_file(relative: str) -> Path:
    """A file shipped with lpds_ros (``config/topics.yaml``, ``calibration/workspace.yaml``, ...).

    Looks in the source tree first, then in ``<prefix>/share/lpds_ros`` (pip and colcon installs), then
    through the ament index when it is importable.  Raises ``ConfigError`` naming the places it looked.
    """
    candidates = [_REPO_ROOT / relative, Path(sys.prefix) / "share" / "lpds_ros" / relative]
    for path in candidates:
        if path.is_file():
            return path
    try:  # a colcon install elsewhere on AMENT_PREFIX_PATH
        from ament_index_python.packages import get_package_share_directory

        path = Path(get_package_share_directory("lpds_ros")) / relative
        if path.is_file():
            return path
        candidates.append(path)
    except Exception:  # not installed / AMENT_PREFIX_PATH unset / no ament_index_python
        pass
    raise ConfigError(f"{relative} not found in {[str(p) for p in candidates]}")


def default_topics_file() -> Path:
    return package_file("config/topics.yaml")


def load_topics(path: str | Path | None = None) -> Topics:
    """Read the names YAML (default: the package's config/topics.yaml).

    Raises ``ConfigError`` with one line: the file and the missing / unknown / malformed key.
    """
    path = Path(path) if path else default_topics_file()
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
        if isinstance(data, dict):
            missing = [f.name for f in dataclasses.fields(Topics) if f.name not in data]
            if missing:
                raise ConfigError(f"{path}: missing topic key(s) {missing}; every name must be given "
                                  f"(copy them from lpds_ros's config/topics.yaml)")
    return load_config(path, Topics)
