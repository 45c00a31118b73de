#!/usr/bin/env bash
# Installs everything lpds_ros needs into ./.venv on a fresh machine (Python 3.10+; 3.11 tested).
# Idempotent: a second run only checks.  Usage: bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
# torch is pinned first and explicitly: an unpinned torch pulls a multi-GB CUDA build.
"${PIP[@]}" install "torch==2.13.0"
"${PIP[@]}" install -e ".[cpu,ros,dev,rosbag]"   # rosbag: rosbags, for teleop's --bag (tested)
# franka_msgs (interfaces/franka_msgs, franka_ros2 v3.4.0's types) built into the venv with cmake/g++;
# skipped when up to date or when a system franka_msgs is importable. See scripts/build_franka_msgs.py.
"$VENV/bin/python" scripts/build_franka_msgs.py
"$VENV/bin/python" -c "import torch, mujoco, onnxruntime, rclpy, lpds_ros" \
    || { echo "install.sh: the venv is incomplete (see pip's messages above)"; exit 1; }
echo "install.sh: ready ($VENV)"
