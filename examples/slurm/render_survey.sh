#!/usr/bin/env bash
# Render a galsim-vae survey config as a Slurm job array: array task J runs GalSim's own
# job J of N (`galsim -n N -j J CONFIG`), with image.nproc = the task's CPUs and one model
# thread per GalSim process (no oversubscription).  The union of the tasks' files is the
# single run's, bit for bit (tests/test_survey.py checks it on a small version).
#
#   sbatch --array=1-16 --cpus-per-task=4 examples/slurm/render_survey.sh
#   DRY_RUN=1 NJOBS=16 CPUS=4 bash examples/slurm/render_survey.sh   # print the commands
#
# Extra arguments are passed to galsim (e.g. output.dir=/scratch/mock image.nobjects=200).
#SBATCH --job-name=galsim-vae-survey
#SBATCH --cpus-per-task=4
#SBATCH --mem-per-cpu=1G
#SBATCH --time=04:00:00
#SBATCH --output=survey_%A_%a.log
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONFIG=${CONFIG:-$HERE/../survey.yaml}
NJOBS=${NJOBS:-${SLURM_ARRAY_TASK_COUNT:-}}
CPUS=${CPUS:-${SLURM_CPUS_PER_TASK:-1}}

fail() { echo "render_survey.sh: error: $*" >&2; exit 2; }
[[ "$NJOBS" =~ ^[1-9][0-9]*$ ]] || fail "NJOBS (or the Slurm array size) must be a whole number >= 1, got '${NJOBS}'"
[[ "$CPUS" =~ ^[1-9][0-9]*$ ]] || fail "CPUS (or --cpus-per-task) must be a whole number >= 1, got '${CPUS}'"
[ -f "$CONFIG" ] || fail "config '$CONFIG' does not exist"

command_for() {   # the galsim command of job $1 (1-based)
    printf '%q ' galsim -n "$NJOBS" -j "$1" "$CONFIG" "image.nproc=$CPUS" \
        "input.vae_model.threads=1" "${@:2}"
    echo
}

if [ "${DRY_RUN:-0}" != 0 ]; then
    for job in $(seq 1 "$NJOBS"); do command_for "$job" "$@"; done
    exit 0
fi
JOB=${SLURM_ARRAY_TASK_ID:-}
[[ "$JOB" =~ ^[1-9][0-9]*$ ]] || fail "SLURM_ARRAY_TASK_ID is not set: submit with sbatch --array=1-N, or use DRY_RUN=1"
(( JOB <= NJOBS )) || fail "array task $JOB is beyond the $NJOBS jobs"
export GALSIM_VAE_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
eval "$(command_for "$JOB" "$@")"
