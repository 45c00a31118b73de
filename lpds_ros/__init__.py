"""lpds_ros: Lagrangian Perturbation Diffusion Steering for frozen generative robot policies, on ROS 2."""

__version__ = "0.1.0"
