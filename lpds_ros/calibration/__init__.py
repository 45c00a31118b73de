"""Hand-eye calibration from recorded marker views (``lpds calibrate``); pure Python + OpenCV."""
from lpds_ros.calibration.handeye import (
    CalibrationError,
    HandEyeResult,
    load_views,
    solve_hand_eye,
    write_hand_eye_yaml,
)

__all__ = ["CalibrationError", "HandEyeResult", "load_views", "solve_hand_eye", "write_hand_eye_yaml"]
