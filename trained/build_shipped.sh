#!/usr/bin/env bash
# Rebuild the bundles shipped in trained/ (CPU, ~1.5 h on 2 cores), exactly as they were made.
#   bash trained/build_shipped.sh [WORKDIR]
# WORKDIR holds the simulated survey, the data set, checkpoints and reports (~2 GB).
set -euo pipefail
WORK=${1:-runs}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
cd "$WORK"

# 1. Simulated COSMOS-format I<25.2 survey (20,000 galaxies) and its comparison with real catalogs
[ -d sim20k ] || galsim-vae simulate --n 20000 --out sim20k --seed 2026 --processes 2 --compare
# 2. Data set: 64x64 stamps at 0.03"/pixel, PSF 41x41, GalSim's default cuts (exclusion 'marginal')
[ -d sim20k_64 ] || galsim-vae prepare cosmos --dir sim20k --sample 25.2 --stamp-size 64 --out sim20k_64
# 3. Redshift-conditioned cvae2 (PSF-aware likelihood, flow prior) and unconditional beta-VAE
COMMON="--channels 16,32,64,128 --latent-size 32 --batch-size 64 --beta warmup:0.1:4:0.01 --lr 1e-3 --lr-decay 0.93 --patience 5 --seed 2026"
galsim-vae train sim20k_64 --out cvae2_cosmos_sim --model cvae2 --conditions zphot --epochs 20 $COMMON
galsim-vae train sim20k_64 --out vae_cosmos_sim --model vae --epochs 12 $COMMON
# 4. Evaluation reports on the held-out (test) split
for m in cvae2_cosmos_sim vae_cosmos_sim; do
    galsim-vae evaluate $m --data sim20k_64 --out report_$m --overwrite
done
echo "bundles in $PWD; copy them into $HERE and add the model cards (see trained/*/README.md)"
