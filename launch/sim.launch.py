"""The lpds graph on the MuJoCo sim: sim_node in place of the robot, then perception -> policy -> safety.

    ros2 launch lpds_ros sim.launch.py model_dir:=/path/to/export [mode:=base|steered|auto] [task:=franka-lift]

Same nodes, names and topics as launch/franka.launch.py; only sim_node replaces franka_bringup, crisp's
cartesian_impedance_controller and franka_gripper.  Every node but sim_node runs on /clock
(use_sim_time), and sim_node steps in lockstep with the graph.  Parameters: config/sim_graph.yaml (one
ROS 2 parameter file for the four nodes); names: config/topics.yaml.  No remappings are needed: every
name comes from topics.yaml (pass topics_file:=... to rename).  With auto_start the sim starts episode
`seed` at once and, with auto_reset, the next one whenever an episode ends.

Without `ros2 launch` (a plain venv), `lpds graph --sim` starts the same nodes with the same files.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params_file = LaunchConfiguration("params_file")
    topics_file = LaunchConfiguration("topics_file")
    task = LaunchConfiguration("task")
    sim_time = {"use_sim_time": True}
    common = {"topics_file": topics_file, "task": task}
    return LaunchDescription([
        DeclareLaunchArgument("params_file", description="ROS 2 parameter file of the four nodes",
                              default_value=PathJoinSubstitution([FindPackageShare("lpds_ros"), "config", "sim_graph.yaml"])),
        DeclareLaunchArgument("topics_file", description="topic and action names",
                              default_value=PathJoinSubstitution([FindPackageShare("lpds_ros"), "config", "topics.yaml"])),
        DeclareLaunchArgument("task", default_value="franka-lift", description="lpds_ros task name"),
        DeclareLaunchArgument("model_dir", description="`lpds export` folder run by policy_node"),
        DeclareLaunchArgument("mode", default_value="auto", description="base (w = eps), steered (w = eps + Delta(s)) or auto"),
        DeclareLaunchArgument("seed", default_value="0", description="first episode's seed"),
        Node(package="lpds_ros", executable="lpds_sim_node", name="sim_node", output="screen",
             parameters=[params_file, common, {"auto_start": True, "auto_reset": True, "seed": LaunchConfiguration("seed")}]),
        Node(package="lpds_ros", executable="lpds_perception_node", name="perception_node", output="screen",
             parameters=[params_file, common, sim_time]),
        Node(package="lpds_ros", executable="lpds_policy_node", name="policy_node", output="screen",
             parameters=[params_file, common, sim_time, {"model_dir": LaunchConfiguration("model_dir"),
                                                         "mode": LaunchConfiguration("mode")}]),
        Node(package="lpds_ros", executable="lpds_safety_filter_node", name="safety_filter_node", output="screen",
             parameters=[params_file, {"topics_file": topics_file}, sim_time]),
    ])
