#!/usr/bin/env bash
# Rebuild the bundles shipped in trained/ (CPU, ~2 h on 2 cores), exactly as they were made.
#   bash trained/build_shipped.sh [WORKDIR]
# WORKDIR holds the simulated survey, the data sets, checkpoints and reports (~3 GB).
set -euo pipefail
WORK=${1:-runs}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
cd "$WORK"

# 1. Simulated COSMOS-format I<25.2 survey (20,000 galaxies) and its comparison with real catalogs
[ -d sim20k ] || galsim-vae simulate --n 20000 --out sim20k --seed 2026 --processes 2 --compare
# 2. Data set: 128x128 stamps at 0.03"/pixel (the seed's), PSF 41x41, GalSim's default cuts
[ -d sim20k_128 ] || galsim-vae prepare cosmos --dir sim20k --sample 25.2 --stamp-size 128 --out sim20k_128
# 3. Redshift-conditioned cvae2 (PSF-aware likelihood, flow prior) and unconditional beta-VAE.
#    Light decoder (8 channels and no GroupNorm at full resolution) and gradient clipping.
#    The cvae2 run was started with --patience 6, stopped after epoch 13 and resumed
#    without it (--resume; the noisy mean validation loss would have stopped it early).
COMMON="--channels 8,32,64,128 --no-full-resolution-norm --latent-size 32 --batch-size 64 --beta warmup:0.1:4:0.01 --lr 1e-3 --lr-decay 0.93 --clip-norm 1e5 --seed 2026"
galsim-vae train sim20k_128 --out cvae2_cosmos_sim --model cvae2 --conditions zphot --epochs 40 $COMMON
galsim-vae train sim20k_128 --out vae_cosmos_sim --model vae --epochs 25 $COMMON
# 4. Evaluation reports on the held-out (test) split
for m in cvae2_cosmos_sim vae_cosmos_sim; do
    galsim-vae evaluate $m --data sim20k_128 --out report_$m --overwrite
done
# 5. The real COSMOS galaxies of shared/data (I<23.5; one F814W PSF for all: the catalogs'
#    PSF files are absent) and the sim-vs-real gap
DATA=${SHARED_DATA:-../../shared/data}
galsim-vae prepare cosmos --dir $DATA/cosmos_paltas_23.5 --sample 23.5 --stamp-size 128 \
    --psf-file $DATA/cosmos_paltas_23.5/psf_101.fits --exclusion-level none --out real_paltas_128
galsim-vae prepare cosmos --dir $DATA/cosmos_slsim_23.5 --sample 23.5 --stamp-size 128 \
    --psf-file $DATA/cosmos_paltas_23.5/psf_101.fits --exclusion-level none --out real_slsim_128
for m in cvae2_cosmos_sim vae_cosmos_sim; do
    galsim-vae evaluate $m --data real_paltas_128 --split all --out report_real_$m --overwrite
    python "$HERE/../benchmarks/sim_real_gap.py" $m sim20k_128 real_paltas_128 real_slsim_128
done
echo "bundles in $PWD; copy them into $HERE and add the model cards (see trained/*/README.md)"
