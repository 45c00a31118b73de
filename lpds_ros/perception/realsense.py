"""Colour frames and intrinsics from an Intel RealSense camera (pyrealsense2), behind a small interface.

A *frame source* has ``intrinsics`` (a ``CameraIntrinsics``: the camera_info content), ``read(timeout_s)
-> (H, W, 3) uint8 RGB or None`` and ``close()``.  ``RealSenseCamera`` is the real one; a test or a
replay passes anything with the same three members.  ``realsense_node`` publishes it as
``sensor_msgs/Image`` + ``CameraInfo``.

No camera, or no pyrealsense2, raises ``CameraNotFound`` with one line that says which and what to do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from lpds_ros.errors import LpdsError
from lpds_ros.perception.calibration import CameraIntrinsics


class CameraNotFound(LpdsError):
    """No usable camera: the library is missing, no device is connected, or it would not start."""


class FrameSource(Protocol):
    intrinsics: CameraIntrinsics

    def read(self, timeout_s: float) -> np.ndarray | None: ...

    def close(self) -> None: ...


def intrinsics_from_pinhole(width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                            coeffs=(0.0, 0.0, 0.0, 0.0, 0.0), name: str = "camera") -> CameraIntrinsics:
    """A ``CameraIntrinsics`` (plumb_bob) from pinhole parameters."""
    k = [float(fx), 0.0, float(cx), 0.0, float(fy), float(cy), 0.0, 0.0, 1.0]
    d = [float(c) for c in coeffs][:5] + [0.0] * max(0, 5 - len(coeffs))
    return CameraIntrinsics(image_width=int(width), image_height=int(height), camera_name=name,
                            camera_matrix={"rows": 3, "cols": 3, "data": k}, distortion_model="plumb_bob",
                            distortion_coefficients={"rows": 1, "cols": 5, "data": d},
                            projection_matrix={"rows": 3, "cols": 4, "data": [k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]})


def write_intrinsics_yaml(path: str | Path, intrinsics: CameraIntrinsics, source: str) -> None:
    """calibration/camera_intrinsics.yaml (camera_info YAML, as ROS' camera_calibration writes it)."""
    from lpds_ros.config import config_to_dict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"# Camera intrinsics (lpds_ros.perception.CameraIntrinsics), from {source}.\n" + yaml.safe_dump(
        config_to_dict(intrinsics), sort_keys=False, default_flow_style=None)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


class RealSenseCamera:
    """The colour stream of a RealSense (D4xx/D5xx) through pyrealsense2, as RGB8."""

    def __init__(self, width: int = 1280, height: int = 720, fps: int = 30, serial: str = ""):
        try:
            import pyrealsense2 as rs
        except ImportError:
            raise CameraNotFound("pyrealsense2 is not installed, so no RealSense camera can be opened "
                                 "(pip install pyrealsense2, or start another camera driver on camera_image)") from None
        try:
            devices = list(rs.context().query_devices())
        except Exception as exc:  # librealsense's RuntimeError (USB permissions, backend)
            raise CameraNotFound(f"RealSense: cannot list devices ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
        if not serials:
            raise CameraNotFound("no RealSense camera found: check the USB 3 cable and the udev rules "
                                 "(librealsense's 99-realsense-libusb.rules), or run `rs-enumerate-devices`")
        if serial and serial not in serials:
            raise CameraNotFound(f"no RealSense camera with serial {serial!r}; connected: {serials}")
        self._rs = rs
        self._pipeline = rs.pipeline()
        config = rs.config()
        if serial:
            config.enable_device(serial)
        config.enable_stream(rs.stream.color, int(width), int(height), rs.format.rgb8, int(fps))
        try:
            profile = self._pipeline.start(config)
        except Exception as exc:
            raise CameraNotFound(f"RealSense {serials[0]}: cannot start {width}x{height} RGB8 at {fps} Hz "
                                 f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        intr = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
        self.serial = serial or serials[0]
        self.intrinsics = intrinsics_from_pinhole(intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy,
                                                  list(intr.coeffs), name=f"realsense_{self.serial}")

    def read(self, timeout_s: float) -> np.ndarray | None:
        try:
            frames = self._pipeline.wait_for_frames(int(timeout_s * 1000))
        except RuntimeError:  # "Frame didn't arrive within ..."
            return None
        color = frames.get_color_frame()
        return np.asanyarray(color.get_data()).copy() if color else None

    def close(self) -> None:
        try:
            self._pipeline.stop()
        except Exception:
            pass


def open_camera(kind: str, **kwargs: Any) -> FrameSource:
    if kind != "realsense":
        raise CameraNotFound(f"unknown camera kind {kind!r} (realsense)")
    return RealSenseCamera(**kwargs)
