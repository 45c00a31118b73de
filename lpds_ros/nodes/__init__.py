"""Thin rclpy nodes over the pure cores (docs/ros.md).

    sim_node            lpds_ros.envs.sim_bridge     the MuJoCo arm behind franka_ros2's / crisp's interfaces
    perception_node     lpds_ros.perception          measurements -> /lpds/observation
    policy_node         lpds_ros.runtime             observation -> /lpds/action_raw (ONNX decoder + steering)
    safety_filter_node  lpds_ros.safety              action_raw -> target_pose, Grasp / Move goals

Names come from config/topics.yaml (``topics.load_topics``), parameters from documented dataclasses
(``params.declare_params``), message conversions from ``convert``.  ``graph`` starts the sim graph from
Python (``lpds graph --sim``).  Nothing here is imported by the rest of the package, so lpds_ros works
without ROS installed.
"""
