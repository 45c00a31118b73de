"""The lpds graph on a real FR3: franka_ros2 + crisp_controllers + perception -> policy -> safety filter.

    ros2 launch lpds_ros franka.launch.py robot_ip:=172.16.0.2 model_dir:=/path/to/export [mode:=steered]

What it starts (each part can be switched off to run it separately):

1. ``start_robot:=true``: franka_bringup's franka.launch.py (franka_ros2 v3.4.0, jazzy) with
   ``robot_ip``, ``robot_type`` (fr3), ``load_gripper`` (franka_gripper: /franka_gripper/{homing,move,grasp},
   /franka_gripper/joint_states) and ``controllers_yaml`` = config/franka_controllers.yaml, which adds
   crisp_controllers to franka's broadcasters and sets the broadcasters' rates.  It brings up the FR3
   hardware interface, robot_state_publisher, joint_state_publisher (/joint_states, 30 Hz),
   joint_state_broadcaster and franka_robot_state_broadcaster (/franka_robot_state_broadcaster/robot_state)
   plus the hardware's /action_server/error_recovery.
2. ``start_controller:=true``: spawners for crisp_controllers' ``pose_broadcaster`` (publishes
   ``current_pose``) and ``cartesian_impedance_controller`` (follows ``target_pose``).  Not franka's
   cartesian_impedance_example_controller: it overwrites its target with a demo motion every cycle.
3. The lpds nodes with config/franka_graph.yaml: perception_node (current_pose, /joint_states,
   /franka_gripper/joint_states, the object marker in camera_image -> /lpds/observation), policy_node
   (``model_dir``, ``mode`` -> /lpds/action_raw) and safety_filter_node (-> target_pose, Grasp / Move goals;
   holds in REFLEX / USER_STOPPED; ErrorRecovery only when an operator publishes /lpds/recover).
   Start a camera driver that publishes the image on the camera_image name of config/topics.yaml
   (or remap it here: ``remappings=[("/lpds/camera/image_raw", "/camera/color/image_raw")]`` on
   perception_node), with calibration/*.yaml measured for that camera.

4. ``start_camera:=true`` (default false): realsense_node publishes a RealSense's colour stream on
   camera_image (+ camera_info); without a camera it stops with one line.  ``camera_serial`` picks one.
5. ``start_policy:=false`` leaves policy_node out, for teleoperation: run ``lpds teleop --out demos.hdf5``
   in a terminal; teleop_node then publishes /lpds/action_raw through the same safety filter.

First run on the real arm: docs/ros.md, "First run on the real arm", step by step.

Remappings: none by default.  Every lpds node takes its names from config/topics.yaml, whose defaults are
the names franka_ros2 and crisp_controllers use in the root namespace; for a namespaced robot pass a
topics file with the namespaced names (``topics_file:=...``) or add remappings to the Node actions below.
Wall-clock time throughout (no use_sim_time).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params_file = LaunchConfiguration("params_file")
    topics_file = LaunchConfiguration("topics_file")
    task = LaunchConfiguration("task")
    franka = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare("franka_bringup"), "launch", "franka.launch.py"])),
        launch_arguments={
            "robot_ip": LaunchConfiguration("robot_ip"),
            "robot_type": LaunchConfiguration("robot_type"),
            "load_gripper": LaunchConfiguration("load_gripper"),
            "use_fake_hardware": LaunchConfiguration("use_fake_hardware"),
            "controllers_yaml": LaunchConfiguration("controllers_yaml"),
        }.items(),
        condition=IfCondition(LaunchConfiguration("start_robot")),
    )
    controllers = [
        Node(package="controller_manager", executable="spawner", output="screen",
             arguments=[name, "--controller-manager", "/controller_manager"],
             condition=IfCondition(LaunchConfiguration("start_controller")))
        for name in ("pose_broadcaster", "cartesian_impedance_controller")
    ]
    return LaunchDescription([
        DeclareLaunchArgument("robot_ip", description="hostname or IP address of the FR3's control unit"),
        DeclareLaunchArgument("model_dir", default_value="", description="`lpds export` folder run by policy_node"),
        DeclareLaunchArgument("mode", default_value="auto", description="base (w = eps), steered (w = eps + Delta(s)) or auto"),
        DeclareLaunchArgument("task", default_value="franka-lift", description="lpds_ros task whose observation the policy reads"),
        DeclareLaunchArgument("robot_type", default_value="fr3", description="franka_bringup robot_type"),
        DeclareLaunchArgument("load_gripper", default_value="true", description="start franka_gripper"),
        DeclareLaunchArgument("use_fake_hardware", default_value="false", description="franka_bringup's fake hardware"),
        DeclareLaunchArgument("start_robot", default_value="true", description="include franka_bringup's franka.launch.py"),
        DeclareLaunchArgument("start_controller", default_value="true", description="spawn crisp's pose_broadcaster and cartesian_impedance_controller"),
        DeclareLaunchArgument("start_policy", default_value="true", description="start policy_node (false: teleoperate with `lpds teleop`)"),
        DeclareLaunchArgument("start_camera", default_value="false", description="start realsense_node on camera_image"),
        DeclareLaunchArgument("camera_serial", default_value="", description="realsense_node: the camera's serial (empty: the first)"),
        DeclareLaunchArgument("controllers_yaml", description="ros2_control controllers (franka broadcasters + crisp)",
                              default_value=PathJoinSubstitution([FindPackageShare("lpds_ros"), "config", "franka_controllers.yaml"])),
        DeclareLaunchArgument("params_file", description="ROS 2 parameter file of the lpds nodes",
                              default_value=PathJoinSubstitution([FindPackageShare("lpds_ros"), "config", "franka_graph.yaml"])),
        DeclareLaunchArgument("topics_file", description="topic and action names",
                              default_value=PathJoinSubstitution([FindPackageShare("lpds_ros"), "config", "topics.yaml"])),
        franka,
        *controllers,
        Node(package="lpds_ros", executable="lpds_perception_node", name="perception_node", output="screen",
             parameters=[params_file, {"topics_file": topics_file, "task": task}]),
        Node(package="lpds_ros", executable="lpds_policy_node", name="policy_node", output="screen",
             parameters=[params_file, {"topics_file": topics_file, "task": task,
                                       "model_dir": LaunchConfiguration("model_dir"), "mode": LaunchConfiguration("mode")}],
             condition=IfCondition(LaunchConfiguration("start_policy"))),
        Node(package="lpds_ros", executable="lpds_realsense_node", name="realsense_node", output="screen",
             parameters=[{"topics_file": topics_file, "serial": LaunchConfiguration("camera_serial")}],
             condition=IfCondition(LaunchConfiguration("start_camera"))),
        Node(package="lpds_ros", executable="lpds_safety_filter_node", name="safety_filter_node", output="screen",
             parameters=[params_file, {"topics_file": topics_file}]),
    ])
