"""realsense_node: a RealSense camera's colour stream as sensor_msgs/Image (rgb8) + CameraInfo.

Publishes   camera_image (config/topics.yaml, default /lpds/camera/image_raw), and CameraInfo on the
            ``camera_info`` beside it (/lpds/camera/camera_info), both stamped with the node's clock
            when the frame arrived, frame ``frame_id`` (the optical frame of calibration/hand_eye.yaml)

The frames come from ``lpds_ros.perception.realsense.RealSenseCamera`` (pyrealsense2) on a reader thread.
Without a camera (or without pyrealsense2) the node stops with one line and exit status 2, for example
``realsense_node: error: no RealSense camera found: check the USB 3 cable ...``.  ``intrinsics_file``
writes the camera's factory intrinsics as calibration/camera_intrinsics.yaml for perception_node and
``lpds calibrate``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from lpds_ros.nodes import convert
from lpds_ros.nodes.params import check_positive, declare_params, param, run_node
from lpds_ros.nodes.topics import load_topics
from lpds_ros.perception.calibration import CameraIntrinsics


@dataclass(frozen=True)
class RealSenseParams:
    topics_file: str = param("", "names YAML (empty: the package's config/topics.yaml)")
    width: int = param(1280, "colour stream width (must match calibration/camera_intrinsics.yaml)")
    height: int = param(720, "colour stream height")
    fps: int = param(30, "colour stream rate")
    serial: str = param("", "the camera's serial number (empty: the first one found)")
    frame_id: str = param("camera_color_optical_frame", "header.frame_id: the optical frame of hand_eye.yaml")
    intrinsics_file: str = param("", "write the camera's intrinsics (camera_info YAML) to this file at start")
    frame_timeout_s: float = param(1.0, "warn when no frame arrived for this long")

    def __post_init__(self) -> None:
        for name in ("width", "height", "fps", "frame_timeout_s"):
            check_positive(self, name)


def camera_info_topic(image_topic: str) -> str:
    """``/ns/image_raw`` -> ``/ns/camera_info`` (image_transport's convention)."""
    head, _, _ = image_topic.rpartition("/")
    return f"{head}/camera_info" if head or image_topic.startswith("/") else "camera_info"


def camera_info_msg(intrinsics: CameraIntrinsics, stamp: float, frame_id: str) -> CameraInfo:
    msg = CameraInfo()
    msg.header.stamp = convert.to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.width, msg.height = intrinsics.image_width, intrinsics.image_height
    msg.distortion_model = intrinsics.distortion_model
    msg.d = [float(v) for v in intrinsics.distortion]
    msg.k = [float(v) for v in intrinsics.K.reshape(-1)]
    msg.r = [float(v) for v in intrinsics.rectification_matrix["data"]]
    msg.p = [float(v) for v in intrinsics.projection_matrix["data"]]
    return msg


class RealSenseNode(Node):
    def __init__(self, source=None, **kwargs):
        super().__init__("realsense_node", **kwargs)
        self.params = p = declare_params(self, RealSenseParams)
        t = load_topics(p.topics_file or None)
        if source is None:
            from lpds_ros.perception.realsense import RealSenseCamera

            source = RealSenseCamera(p.width, p.height, p.fps, p.serial)  # CameraNotFound: one line, exit 2
        self.source = source
        self.intrinsics = source.intrinsics
        if p.intrinsics_file:
            from lpds_ros.perception.realsense import write_intrinsics_yaml

            write_intrinsics_yaml(p.intrinsics_file, self.intrinsics, f"realsense_node ({self.intrinsics.camera_name})")
        self.pub_image = self.create_publisher(Image, t.camera_image, 2)
        self.pub_info = self.create_publisher(CameraInfo, camera_info_topic(t.camera_image), 2)
        self.frames = 0
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="realsense_node.read", daemon=True)
        self._thread.start()
        self.get_logger().info(f"{self.intrinsics.camera_name}: {self.intrinsics.image_width}x{self.intrinsics.image_height} "
                               f"-> {t.camera_image} + {camera_info_topic(t.camera_image)}")

    def _loop(self) -> None:
        while self._running:
            rgb = self.source.read(self.params.frame_timeout_s)
            if not self._running:
                break
            if rgb is None:
                self.get_logger().warning(f"no frame for {self.params.frame_timeout_s:.1f} s", throttle_duration_sec=5.0)
                continue
            stamp = self.get_clock().now().nanoseconds * 1e-9
            self.pub_info.publish(camera_info_msg(self.intrinsics, stamp, self.params.frame_id))
            self.pub_image.publish(convert.image_msg(rgb, stamp, self.params.frame_id))
            self.frames += 1

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=5.0)
        self.source.close()


def main(args=None) -> int:
    return run_node(RealSenseNode, "realsense_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
