"""Node parameters as documented dataclasses, and the one ``main`` every node shares.

Each node declares its ROS parameters from a dataclass (``param(default, doc)`` fields; ``__post_init__``
validates and names the bad field), so the parameter set, its defaults, its documentation
(``ros2 param describe``) and its checks live in one place.  A parameter file that names a parameter the
node does not declare, or gives one the wrong type, is an error, not silently ignored.

``run_node`` is ros2/examples' ``main()``: init -> spin -> shutdown, plus: a user mistake (``LpdsError``,
a malformed ``--params-file``) is printed as one line and exits with status 2, no traceback.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import MISSING, field
from typing import Any, Callable, TypeVar

from lpds_ros.config import ConfigError
from lpds_ros.errors import LpdsError

T = TypeVar("T")

# Parameters rclpy declares on every node.
_BUILTIN = {"use_sim_time", "start_type_description_service", "start_parameter_event_publisher"}


def param(default: Any, doc: str) -> Any:
    """A dataclass field that is also a documented ROS parameter (lists are stored as tuples)."""
    if isinstance(default, list):
        default = tuple(default)
    return field(default=default, metadata={"doc": doc})


def declare_params(node, cls: type[T]) -> T:
    """Declare one ROS parameter per field of ``cls`` on ``node`` and return the validated values.

    Raises ``ConfigError`` (one line) for an override of an undeclared name or of the wrong type, and for
    whatever ``cls.__post_init__`` rejects.
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import (
        InvalidParameterTypeException,
        InvalidParameterValueException,
    )

    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        descriptor = ParameterDescriptor(description=f.metadata.get("doc", ""))
        if isinstance(default, tuple):
            default = list(default)
            if not default:  # an empty list has no element type: accept whatever the file gives
                descriptor.dynamic_typing = True
        try:
            node.declare_parameter(f.name, default, descriptor)
        except (InvalidParameterTypeException, InvalidParameterValueException, TypeError) as exc:
            raise ConfigError(f"{node.get_name()}: parameter {f.name!r}: {str(exc).splitlines()[0]} "
                              f"(default {default!r})") from None
        value = node.get_parameter(f.name).value
        values[f.name] = tuple(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "array" else value
    overrides = getattr(node, "_parameter_overrides", {})
    unknown = sorted(name for name in overrides if name not in values and name not in _BUILTIN)
    if unknown:
        raise ConfigError(f"{node.get_name()}: unknown parameter(s) {unknown}; "
                          f"valid: {sorted(f.name for f in dataclasses.fields(cls))}")
    return cls(**values)


def check_choice(obj: object, name: str, choices: tuple) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ConfigError(f"{type(obj).__name__}.{name} = {value!r}: must be one of {list(choices)}")


def check_positive(obj: object, name: str, allow_zero: bool = False) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{type(obj).__name__}.{name} = {value!r}: must be {'>= 0' if allow_zero else '> 0'}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_node(factory: Callable[..., Any], name: str, args: list[str] | None = None) -> int:
    """init -> build the node with ``factory()`` -> spin (multi-threaded) -> shutdown.

    Returns the process exit status: 0, or 2 after printing one ``<name>: error: ...`` line for a user
    mistake (bad parameter file, bad value, missing model, bad names YAML).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    try:
        rclpy.init(args=args if args is not None else sys.argv)
    except Exception as exc:  # rcl's RCLError for an unreadable --params-file, bad --ros-args
        print(f"{name}: error: {_first_line(exc)}", file=sys.stderr)
        return 2
    node = None
    status = 0
    try:
        node = factory()
        executor = MultiThreadedExecutor(num_threads=6)
        executor.add_node(node)
        try:
            executor.spin()
        except Exception:
            if rclpy.ok():  # a real error; otherwise SIGINT/SIGTERM shut the context down under the executor
                raise
        finally:
            executor.shutdown()
    except LpdsError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        status = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return status
