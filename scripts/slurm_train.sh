#!/usr/bin/env bash
# Multi-node training on Slurm: one `accelerate launch` per node, each starting one process per GPU.
#
#   sbatch --nodes=4 scripts/slurm_train.sh RECIPE [STAGE] [--field value ...]
#
# RECIPE: a recipe file (params/recipes/paper/sft.yaml, .../dpo.yaml: trainer fields, see editcaption.train.configs).
# STAGE: the module editcaption.train.STAGE (default sft; hae_dpo for the DPO stage). Extra `--field value` pairs
# override the recipe's fields, e.g. --model_name_or_path, --dataset_path and --output_dir, which a notebook sets.
# The accelerate config is $ACCELERATE_CONFIG, else params/accelerate/zero3.yaml (the paper's setting: ZeRO-3, bf16).
# DRY_RUN=1 prints the command instead of running it.
# Run from the repository root (the accelerate configs name their DeepSpeed JSON relative to it).
#SBATCH --job-name=editcaption-train
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --exclusive
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

RECIPE=${1:?usage: slurm_train.sh RECIPE [STAGE] [--field value ...]}
shift
STAGE=sft
if [[ $# -gt 0 && $1 != --* ]]; then STAGE=$1; shift; fi
[[ -f $RECIPE ]] || { echo "recipe $RECIPE not found (recipes: params/recipes/<name>/sft.yaml, dpo.yaml)" >&2; exit 2; }
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-params/accelerate/zero3.yaml}
[[ -f $ACCELERATE_CONFIG ]] || { echo "accelerate config $ACCELERATE_CONFIG not found" >&2; exit 2; }

NUM_MACHINES=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
GPUS_PER_NODE=${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L 2>/dev/null | wc -l)}
(( GPUS_PER_NODE > 0 )) || { echo "no GPUs found on this node (set SLURM_GPUS_ON_NODE)" >&2; exit 2; }
MAIN_PROCESS_IP=${MAIN_PROCESS_IP:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)}
MAIN_PROCESS_PORT=${MAIN_PROCESS_PORT:-29500}

# Single quotes: $SLURM_NODEID is expanded by each node's own shell under srun.
LAUNCH=(accelerate launch
  --config_file "$ACCELERATE_CONFIG"
  --num_machines "$NUM_MACHINES"
  --num_processes $((NUM_MACHINES * GPUS_PER_NODE))
  --machine_rank '$SLURM_NODEID'
  --main_process_ip "$MAIN_PROCESS_IP"
  --main_process_port "$MAIN_PROCESS_PORT"
  --rdzv_backend static
  --same_network
  -m "editcaption.train.$STAGE"
  --config "$RECIPE" "$@")
COMMAND=$(printf '%q ' "${LAUNCH[@]}")
COMMAND=${COMMAND//\\\$SLURM_NODEID/\$SLURM_NODEID}

echo "nodes $NUM_MACHINES x $GPUS_PER_NODE GPUs, main process $MAIN_PROCESS_IP:$MAIN_PROCESS_PORT, config $ACCELERATE_CONFIG"
if [[ ${DRY_RUN:-0} == 1 ]]; then
  echo "$COMMAND"
  exit 0
fi
srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c "$COMMAND"
