#!/usr/bin/env bash
# Rebuilds the gym (locomotion) and Adroit base policies under models/ from scratch: SAC expert (Adroit: the scripted
# demonstrator) -> noised "medium" demos -> behaviour-cloned diffusion/flow policies.  One core throughout
# (OMP_NUM_THREADS=1, --threads 1); on the 2-core dev box about 10-12 min of SAC per task plus a few minutes of
# pretraining per model.  See docs/gym_adroit.md.
#
# Recipe (DESIGN §6):
#   - expert: the best checkpoint (by deterministic evaluation return) of `lpds expert` (the project's SAC), seed 0;
#     an existing experts/<task>/expert.json without a checkpoint.pt is used as shipped (delete it to retrain);
#     an interrupted run resumes from experts/<task>/checkpoint.pt (the shipped hopper expert was run to 60000 steps,
#     then resumed to 110000: the loop's resume is exact, so that equals one 110000-step run);
#   - medium demos: the expert's action plus Gaussian noise of std NOISE (clipped to [-1, 1]), NOISE chosen per task
#     so that the demos' mean return lands at about 1/3-1/2 of the expert's; 50 episodes, seeds 1000..1049;
#   - base policies: architecture and epochs fixed (the package defaults: 3 x 512 MLP denoiser, H = 8 / 4 executed;
#     EPOCHS below), only the number of demos used for training varies.
#
#   - adroit-door: the same recipe as relocate's diffusion policy, from the scripted door demonstrator (100 successful
#     episodes at noise 0.02, seeds 1000.., 109 attempts; the first 20 cloned, 150 epochs, ~2.5 min).
#   - adroit-relocate: SAC from scratch does not learn the hand here, so the scripted demonstrator records 100
#     successful episodes at noise 0.02 (seeds 1000.., 146 attempts); a flow policy on all 100 (150 epochs, ~10 min,
#     DESIGN §6's cap) and a diffusion policy on the first 20 (150 epochs, ~3.5 min) that predicts x_0 and samples
#     from t = T - 1 (config/pretrain/diffusion_x0_trailing.yaml): the default epsilon / leading-timestep diffusion
#     does not fit this task's finger commands (docs/gym_adroit.md).
#
#   - adroit-pen: the MPPI demonstrator (lpds_ros/data/adroit_mpc.py; plans from the simulator's state) records 30
#     successful episodes without added noise (seeds 1000..; ~15-20 s per attempt, about half succeed: ~20 min on
#     one core); the diffusion recipe on the first 20, but 600 epochs: 150 are only 1,200 gradient steps on the
#     pen's 2,000 pairs, and that clone scored 10% where 600 epochs score 20% (docs/gym_adroit.md, "Pen").
#   - adroit-hammer: the same planner with a hammer score records 30 successful episodes without added noise (seeds
#     1000.., 33 attempts, ~45 s each: ~25 min on one core); the pen's recipe (first 20, 600 epochs, ~5.5 min) gives
#     29% (30 demos: 19%; 150 epochs: 13%; docs/gym_adroit.md, "Hammer").
#
# Usage: bash scripts/make_gym_policies.sh [task ...]     (default: hopper walker2d halfcheetah adroit-relocate
#        adroit-door adroit-pen adroit-hammer)
set -euo pipefail
cd "$(dirname "$0")/.."
LPDS=.venv/bin/lpds
export OMP_NUM_THREADS=1
EPOCHS=300
EPISODES=50
# task          SAC env steps   demo noise   demos used for training   backbones
SPECS=(
    "hopper        110000         0.6          20                        diffusion,flow"
    "walker2d      60000          0.5          10                        diffusion"
    "halfcheetah   60000          0.3          10                        diffusion"
)
TASKS_WANTED=("$@")
wanted() { [ ${#TASKS_WANTED[@]} -eq 0 ] || [[ " ${TASKS_WANTED[*]} " =~ " $1 " ]]; }
mkdir -p demos experts models
for spec in "${SPECS[@]}"; do
    set -- $spec
    task=$1 steps=$2 noise=$3 n=$4 backbones=$5
    wanted "$task" || continue
    if [ -f "experts/$task/expert.json" ] && [ ! -f "experts/$task/checkpoint.pt" ]; then
        echo "== $task: using the shipped expert experts/$task (delete it to retrain)"
    else
        resume=""
        [ -f "experts/$task/checkpoint.pt" ] && resume="--resume"
        $LPDS expert --task "$task" --steps "$steps" --seed 0 --out "experts/$task" --no-progress $resume
    fi
    $LPDS collect --task "$task" --expert "experts/$task" --noise "$noise" --episodes "$EPISODES" --seed 1000 \
        --out "demos/$task.hdf5" --overwrite
    for backbone in ${backbones//,/ }; do
        rm -rf "models/$task-$backbone"
        $LPDS pretrain --task "$task" --demos "demos/$task.hdf5" --backbone "$backbone" --max-demos "$n" \
            --epochs "$EPOCHS" --seed 0 --out "models/$task-$backbone"
    done
done

# Adroit: successful episodes from the task's own demonstrator (scripted or planner), seeds 1000..
collect_demonstrator() {  # task noise episodes
    $LPDS collect --task "$1" --noise "$2" --episodes "$3" --successful-only --seed 1000 \
        --out "demos/$1.hdf5" --overwrite
}

# Adroit: the x_0-predicting diffusion policy on the first 20 demos
pretrain_x0_diffusion() {  # task epochs
    rm -rf "models/$1-diffusion"
    $LPDS pretrain --task "$1" --demos "demos/$1.hdf5" --backbone diffusion --max-demos 20 \
        --epochs "$2" --seed 0 --config config/pretrain/diffusion_x0_trailing.yaml --out "models/$1-diffusion"
}

if wanted adroit-relocate; then
    collect_demonstrator adroit-relocate 0.02 100
    rm -rf models/adroit-relocate-flow
    $LPDS pretrain --task adroit-relocate --demos demos/adroit-relocate.hdf5 --backbone flow --epochs 150 --seed 0 \
        --out models/adroit-relocate-flow
    pretrain_x0_diffusion adroit-relocate 150
fi
if wanted adroit-door; then
    collect_demonstrator adroit-door 0.02 100
    pretrain_x0_diffusion adroit-door 150
fi
if wanted adroit-pen; then
    collect_demonstrator adroit-pen 0 30
    pretrain_x0_diffusion adroit-pen 600
fi
if wanted adroit-hammer; then
    collect_demonstrator adroit-hammer 0 30
    pretrain_x0_diffusion adroit-hammer 600
fi
