#!/usr/bin/env bash
# Runs a slice of the steering bench on the lent GPU machine (16 CPU cores, one GPU, Python 3.12, no
# package index): installs the wheels carried in .devcarry/ into a scratch folder, checks that a run works
# on the GPU, then runs `lpds bench` for the cells given and packs the per-run results into $OUT.
#
#   usage (on the device):  [STEPS=30000 WAVES=2 UTD=u MPS=1] bash benchmarks/device_bench.sh SECONDS 'BENCH-ARGS' ...
#
# UTD=u skips the speed probe and runs every bench on the GPU at that UTD. MPS=1 first tries NVIDIA's
# multi-process service, which lets the runs' small kernels share the GPU instead of time-slicing it; when its
# daemon or a client fails, the runs go on without it.
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

[ -n "${SKIP_INSTALL:-}" ] || python3 -m pip install -q --no-deps --no-index --target /tmp/pydeps .devcarry/wheels/*.whl 2>&1 | tail -2
# No rendering here: MUJOCO_GL=disable skips mujoco's GL context at import (the EGL probe fails without
# PyOpenGL); glfw stays, since gymnasium's MuJoCo envs import it at module level.
rm -rf /tmp/pydeps/OpenGL
export MUJOCO_GL=disable
export PYTHONPATH=/tmp/pydeps:$PWD/.devcarry/gr:$PWD OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
python3 - <<'EOF'
import mujoco, gymnasium, torch
print("mujoco", mujoco.__version__, "gymnasium", gymnasium.__version__, "torch", torch.__version__,
      "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))
EOF

if [ -n "${MPS:-}" ]; then
  # A private pipe folder: clients without CUDA_MPS_PIPE_DIRECTORY never see this daemon, so a failed
  # check below leaves the runs on plain time-slicing rather than hanging on a broken server.
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  # A daemon left by an earlier call on a still-warm machine answers "already running": the client check decides.
  nvidia-cuda-mps-control -d || true
  if timeout 60 python3 -c "import torch; print('mps client ok', (torch.ones(4, device='cuda') * 2).sum().item())"; then
    echo "MPS on"; mps_on=1
  else
    echo "MPS failed, going on without it"; cat $CUDA_MPS_LOG_DIRECTORY/* 2>/dev/null | tail -5
    echo quit | timeout 10 nvidia-cuda-mps-control 2>/dev/null
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  fi
fi

if [ -n "${UTD:-}" ]; then
  device=${DEVICE:-cuda}; utd=$UTD
  # UTD_MPS: the UTD to use instead when MPS came up (the shared GPU then affords more updates).
  [ -n "${mps_on:-}" ] && [ -n "${UTD_MPS:-}" ] && utd=$UTD_MPS
else
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
fi
left=$(( budget_s - ($(date +%s) - start) ))
echo "bench on $device, UTD $utd, ${left}s left"
pids=()
for args in "$@"; do
  echo "  lpds bench $args"
  # shellcheck disable=SC2086  # each argument is one bench command line
  timeout "$((left - 20))" python3 -m lpds_ros.cli bench --device "$device" --utd "$utd" --steps "${STEPS:-30000}" \
    --results "$results" --no-progress $args >"/tmp/bench-$((${#pids[@]})).log" 2>&1 &
  pids+=($!)
done
( sleep 150; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv >"$out/gpu-during.txt" ) >/dev/null 2>&1 &
sampler=$!
wait "${pids[@]}"
kill "$sampler" 2>/dev/null
# Per run: updates, ms per update and the last evaluation (finished runs from result.json, stopped ones
# from their log), so a run cut short still says how far it got.
python3 - "$results" <<'EOF'
import json, pathlib, sys
for run in sorted(pathlib.Path(sys.argv[1]).glob("runs/*/*/*/seed*")):
    if not run.is_dir():
        continue
    result, log = run / "result.json", run / "log.jsonl"
    if result.exists():
        r = json.loads(result.read_text())
        ms = 1e3 * r["timing"]["update"] / max(r["updates"], 1)
        print(f"{run}: done, {r['updates']} updates, {ms:.1f} ms/update, final return {r['final']['return']:.1f}")
    elif log.exists():
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        evals = [x for x in lines if x.get("type") == "eval"]
        print(f"{run}: stopped, {len(lines)} log lines, last {evals[-1] if evals else lines[-1] if lines else None}")
EOF
tail -n 30 /tmp/bench-*.log
tar --exclude='*.pt' --exclude='tensorboard' -czf "$out/bench-results.tgz" -C "$results" .
cp /tmp/bench-*.log "$out/" 2>/dev/null
cp /tmp/probe-cuda-1.log "$out/probe-cuda.log" 2>/dev/null
nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv >"$out/gpu.txt" 2>&1
echo "done in $(( $(date +%s) - start ))s"
