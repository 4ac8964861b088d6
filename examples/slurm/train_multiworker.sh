#!/usr/bin/env bash
# Train a galsim-vae model on several nodes: one Slurm task per worker, each running the
# same `galsim-vae train --strategy multiworker` (TensorFlow's MultiWorkerMirroredStrategy;
# the cluster comes from Slurm through SlurmClusterResolver).  Worker 0 (the chief) writes
# the checkpoints, logs and bundle; each worker reads its own shard of the data set.
# DATASET and OUT must be on a file system every node sees.  After any failure, submit
# the same script again: --resume continues from the chief's last checkpoint.
#
#   sbatch --nodes=4 --ntasks-per-node=1 --cpus-per-task=8 examples/slurm/train_multiworker.sh \
#          DATASET OUT [more galsim-vae train options]
#   DRY_RUN=1 NTASKS=4 bash examples/slurm/train_multiworker.sh DATASET OUT   # print the command
#
# --batch-size is the global batch (all workers together); it must divide among them.
#SBATCH --job-name=galsim-vae-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=train_%j.log
set -euo pipefail

fail() { echo "train_multiworker.sh: error: $*" >&2; exit 2; }
[ $# -ge 2 ] || fail "give the data set and the bundle to write: train_multiworker.sh DATASET OUT [options]"
DATASET=$1; OUT=$2; shift 2
[ -d "$DATASET" ] || fail "data set '$DATASET' does not exist"
NTASKS=${NTASKS:-${SLURM_NTASKS:-}}
[[ "$NTASKS" =~ ^[1-9][0-9]*$ ]] || fail "NTASKS (or the job's --ntasks) must be a whole number >= 1, got '${NTASKS}'"
SEED=${SEED:-2026}

# the same command for every task; srun starts one per task, Slurm gives each its rank
command=(galsim-vae train "$DATASET" --out "$OUT" --strategy multiworker --seed "$SEED" --resume "$@")
if [ "${DRY_RUN:-0}" != 0 ]; then
    printf 'srun --ntasks=%s ' "$NTASKS"; printf '%q ' "${command[@]}"; echo
    exit 0
fi
[ -n "${SLURM_JOB_ID:-}" ] || fail "not inside a Slurm job: submit with sbatch, or use DRY_RUN=1"
export GALSIM_VAE_PORT_BASE=${GALSIM_VAE_PORT_BASE:-8888}
srun --ntasks="$NTASKS" "${command[@]}"
