#!/usr/bin/env bash
# mini-VTAB at the paper's VTAB-1K recipe (100 epochs, lr 1e-3, 10 warm-up epochs): DyT r=0.5 and AdaptFormer,
# 7 tasks x 3 seeds (configs/minivtab_paper_recipe.yaml), on one GPU with several runs sharing it. Writes the
# suite's table, CSV and plot, the device's name and the wall time to OUT.
#   benchmarks/minivtab_paper_recipe.sh [OUT (docs/results/minivtab_paper_recipe)] [JOBS (14)] [GPUS (1)]
# Rerun to resume; GPUS=0 runs the JOBS processes on CPU cores.
set -euo pipefail
out=${1:-docs/results/minivtab_paper_recipe}
jobs=${2:-14}
gpus=${3:-1}
python=${PYTHON:-python3}
mkdir -p "$out"
"$python" -m dytune minivtab --root data/minivtab  # keeps the tasks already built
if [ "$gpus" -gt 0 ]; then
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/device.txt"
else
  { lscpu | grep "Model name" | sed 's/.*: *//'; echo "$jobs processes on CPU"; } > "$out/device.txt"
fi
start=$(date +%s)
OMP_NUM_THREADS=1 "$python" -m dytune suite configs/minivtab_paper_recipe.yaml --gpus "$gpus" --jobs "$jobs"
echo "wall $(( $(date +%s) - start )) s for the runs that were not finished before, $jobs at a time" >> "$out/device.txt"
cp runs/minivtab-paper-recipe/results.csv runs/minivtab-paper-recipe/summary.md \
   runs/minivtab-paper-recipe/accuracy_vs_cost.png "$out/"
cat "$out/device.txt" "$out/summary.md"
