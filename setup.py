"""lpds_ros is one tree that is both a colcon (ament_python) package and a pip-installable package.

colcon on a robot computer: `colcon build --packages-select lpds_ros` (system ROS 2 Jazzy provides rclpy & co).
pip here: `bash scripts/install.sh` (a venv with the ROS 2 Jazzy wheels, the `ros` extra).
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "lpds_ros"

# The ROS 2 Jazzy wheels for a plain venv.  A robot computer with a system Jazzy does not install these.
ROS_WHEELS = [
    "ros-jazzy-rclpy",
    "ros-jazzy-std-msgs",
    "ros-jazzy-sensor-msgs",
    "ros-jazzy-geometry-msgs",
    "ros-jazzy-rosgraph-msgs",
    "ros-jazzy-builtin-interfaces",
    "ros-jazzy-action-msgs",
    "ros-jazzy-rmw-fastrtps-cpp",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="LP-DS: Lagrangian trust-region noise steering of frozen diffusion/flow robot policies, with a ROS 2 Franka stack",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.26",
        "torch==2.13.0",
        "mujoco>=3.2",
        "gymnasium>=1.0",
        "gymnasium-robotics>=1.4",
        "h5py>=3.10",
        "safetensors>=0.4",
        "onnx>=1.16",
        "tqdm>=4.60",
        "matplotlib>=3.8",
        "pyyaml>=6.0",
        "tensorboard>=2.15",
        "opencv-python-headless>=4.8",
    ],
    extras_require={
        # onnxruntime comes in exactly one flavour: `cpu` here, `gpu` on a robot computer with CUDA.
        "cpu": ["onnxruntime>=1.18"],
        "gpu": ["onnxruntime-gpu>=1.18"],
        "ros": ROS_WHEELS,
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100"],
        "ray": ["ray>=2.40"],
        # teleop_node --bag / lpds teleop --bag: rosbag2 (MCAP) writer; install.sh installs it (tests use it)
        "rosbag": ["rosbags==0.11.9"],
        # hardware drivers, only on the robot computer: a 3Dconnexion SpaceMouse (needs libhidapi) and RealSense
        "spacemouse": ["pyspacemouse>=1.1"],
        "realsense": ["pyrealsense2>=2.55"],
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/pretrain", glob("config/pretrain/*.yaml")),
        (f"share/{PACKAGE}/calibration", glob("calibration/*.yaml")),
        (f"share/{PACKAGE}/sim", glob("sim/*.xml")),
    ],
    entry_points={
        "console_scripts": [
            "lpds = lpds_ros.cli:main",
            "lpds_sim_node = lpds_ros.nodes.sim_node:main",
            "lpds_perception_node = lpds_ros.nodes.perception_node:main",
            "lpds_policy_node = lpds_ros.nodes.policy_node:main",
            "lpds_safety_filter_node = lpds_ros.nodes.safety_filter_node:main",
            "lpds_teleop_node = lpds_ros.nodes.teleop_node:main",
            "lpds_realsense_node = lpds_ros.nodes.realsense_node:main",
        ],
    },
    zip_safe=False,
)
