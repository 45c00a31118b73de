#!/usr/bin/env bash
# Runs a slice of the steering bench on the lent GPU machine (16 CPU cores, one GPU, Python 3.12, no
# package index): installs the wheels carried in .devcarry/ into a scratch folder, checks that a run works
# on the GPU, then runs `lpds bench` for the cells given and packs the per-run results into $OUT.
#
#   usage (on the device):  [STEPS=30000 WAVES=2] bash benchmarks/device_bench.sh SECONDS 'BENCH-ARGS' ...
#
# Each quoted BENCH-ARGS is one `lpds bench` started beside the others (give each its own --jobs; they
# share the 16 cores).  SECONDS is the wall time of the whole script; runs still going then are stopped
# and only finished cells come back (the bench caches each run on its own, so the rest resume elsewhere).  .devcarry/ holds
# mujoco, mujoco-core, gymnasium (+ its pure-Python deps) as cp312 wheels, and gymnasium-robotics'
# Panda model files (the only part of that package the Franka tasks read).
set -uo pipefail
budget_s=$1; shift
start=$(date +%s)
out=${OUT:-/tmp/out}
mkdir -p "$out"
results=/tmp/bench-results

python3 -m pip install -q --no-deps --no-index --target /tmp/pydeps .devcarry/wheels/*.whl 2>&1 | tail -2
# No rendering here: without PyOpenGL/glfw mujoco skips its renderer at import (their EGL probe fails).
rm -rf /tmp/pydeps/OpenGL /tmp/pydeps/glfw
unset MUJOCO_GL
export PYTHONPATH=/tmp/pydeps:$PWD/.devcarry/gr:$PWD OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
python3 - <<'EOF'
import mujoco, gymnasium, torch
print("mujoco", mujoco.__version__, "gymnasium", gymnasium.__version__, "torch", torch.__version__,
      "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))
EOF

# Smoke + speed probe: 12 GPU runs and 1 CPU run at once, a short budget each; prints ms per update.
device=cuda
launch() {  # launch DEVICE COUNT
  for i in $(seq 1 "$2"); do
    timeout 120 python3 -m lpds_ros.cli finetune --task franka-lift --method lpds --device "$1" --steps 1600 \
      --learning-starts 400 --utd 4 --eval-every 100000 --eval-episodes 2 --entropy-latents 16 --entropy-states 2 \
      --seed $((900 + i)) --out "/tmp/probe-$1-$i" --no-progress >"/tmp/probe-$1-$i.log" 2>&1 &
  done
}
report() {  # report DEVICE COUNT
  python3 - "$1" "$2" <<'EOF'
import json, sys
dev, n = sys.argv[1], int(sys.argv[2])
ms = []
for i in range(1, n + 1):
    try:
        r = json.load(open(f"/tmp/probe-{dev}-{i}/result.json"))
        ms.append(1e3 * r["timing"]["update"] / max(r["updates"], 1))
    except Exception as exc:
        print(f"probe {dev} {i} failed: {exc}")
print(f"probe {dev} x{n}: {len(ms)} ok, ms/update " + ", ".join(f"{m:.1f}" for m in ms))
open(f"/tmp/probe-{dev}.ms", "w").write(str(sum(ms) / len(ms)) if ms else "nan")
EOF
}
launch cuda 12
launch cpu 1
wait
report cuda 12
report cpu 1
tail -3 /tmp/probe-cuda-1.log
# The GPU wins only if an update there, shared by 12 runs, is faster than one on a CPU core.
device=$(python3 -c "
import math; g, c = (float(open(f'/tmp/probe-{d}.ms').read()) for d in ('cuda', 'cpu'))
print('cpu' if math.isnan(g) or (not math.isnan(c) and c < g) else 'cuda')")

# UTD: the largest of 16, 8, 4, 2, 1 whose updates fit WAVES runs one after another per job slot in the
# time left (about 90 s of each run go to env steps, evaluation and start-up).
left=$(( budget_s - ($(date +%s) - start) ))
utd=$(python3 -c "
ms = float(open('/tmp/probe-$device.ms').read()); per_run = ($left - 30) / ${WAVES:-2} - 90
decisions = (${STEPS:-30000} - 2000) / 4
print(next((u for u in (16, 8, 4, 2) if decisions * u * ms / 1e3 <= per_run), 1))")
echo "bench on $device, UTD $utd, ${left}s left"
pids=()
for args in "$@"; do
  echo "  lpds bench $args"
  # shellcheck disable=SC2086  # each argument is one bench command line
  timeout "$((left - 20))" python3 -m lpds_ros.cli bench --device "$device" --utd "$utd" --steps "${STEPS:-30000}" \
    --results "$results" --no-progress $args >"/tmp/bench-$((${#pids[@]})).log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
tail -n 30 /tmp/bench-*.log
tar --exclude='*.pt' --exclude='tensorboard' -czf "$out/bench-results.tgz" -C "$results" .
cp /tmp/bench-*.log "$out/" 2>/dev/null
cp /tmp/probe-cuda-1.log "$out/probe-cuda.log" 2>/dev/null
nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv >"$out/gpu.txt" 2>&1
echo "done in $(( $(date +%s) - start ))s"
