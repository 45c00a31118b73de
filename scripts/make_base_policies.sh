#!/usr/bin/env bash
# Rebuilds the shipped base policies under models/ from scratch (about 2 minutes on 2 CPU cores).
#
# Recipe (DESIGN §6): architecture and epochs fixed, only the number of demonstrations varies, chosen so that the
# frozen policy is clearly below the scripted demonstrator (30-70% success): that gap is what LP-DS must close.
set -euo pipefail
cd "$(dirname "$0")/.."
LPDS=.venv/bin/lpds
EPOCHS=300
mkdir -p demos
# task             demos used for training
for spec in "franka-lift 4" "franka-pickplace 6"; do
    set -- $spec
    task=$1 n=$2
    $LPDS collect --task "$task" --episodes 100 --noise 0.1 --seed 1000 --out "demos/$task.hdf5" --overwrite
    for backbone in diffusion flow; do
        rm -rf "models/$task-$backbone"
        $LPDS pretrain --task "$task" --demos "demos/$task.hdf5" --backbone "$backbone" --max-demos "$n" \
            --epochs "$EPOCHS" --seed 0 --out "models/$task-$backbone"
    done
done
