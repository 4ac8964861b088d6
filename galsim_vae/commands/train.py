"""``galsim-vae train DATASET --out BUNDLE``: train a VAE and write a model bundle."""

from __future__ import annotations

import argparse

from ..training.distributed import STRATEGIES, cluster_from_environment
from ..training.encodings import REFINE_RATE
from ..training.flow_selection import SELECTIONS

#: --likelihood choices -> psf_free.
LIKELIHOODS = {"psf": True, "noise": False}


def _widths(flag: str, example: str):
    """An argparse type: comma-separated layer widths (whole numbers >= 1)."""
    def parse(text: str) -> list[int]:
        try:
            widths = [int(c) for c in text.split(",") if c.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} {text!r}: give comma-separated whole numbers, e.g. {example}") from None
        if not widths or any(w < 1 for w in widths):
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: widths must be >= 1")
        return widths
    return parse


def add_flow_arguments(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The flow prior's fit options (``train`` and ``refit-prior``); without ``defaults``
    every option defaults to None (``refit-prior`` then takes the bundle's own)."""
    def default(value):
        return value if defaults else None

    where = "" if defaults else " (default: the bundle's)"
    parser.add_argument("--flow-units", type=_widths("--flow-units", "128,128"),
                        default=default((64, 64)), metavar="N,N",
                        help="hidden widths of each coupling network of the flow prior"
                             + (where or " (default: 64,64)"))
    parser.add_argument("--flow-couplings", type=int, default=default(6), metavar="N",
                        help="coupling layers of the flow prior" + (where or " (default: 6)"))
    parser.add_argument("--flow-spline-bins", type=int, default=default(0), metavar="K",
                        help="0: affine couplings; K >= 2: rational-quadratic spline "
                             "couplings of K bins (neural spline flow; fits many-peaked "
                             "latent distributions, ~3x slower per epoch)"
                             + (where or "; default 0"))
    parser.add_argument("--flow-epochs", type=int, default=default(100), metavar="N",
                        help="most epochs of the flow prior's fit (early-stopped on the "
                             "validation encodings)" + (where or "; default: 100"))
    parser.add_argument("--flow-refine-steps", type=int, default=default(0), metavar="N",
                        help="before the flow prior is fitted, refine each encoding by N "
                             "gradient steps on log p(x|z) (closes the encoder's amortization "
                             "gap, which rounds faint galaxies; 8 is enough)"
                             + (where or "; default 0"))
    parser.add_argument("--flow-refine-rate", type=float, default=default(REFINE_RATE),
                        metavar="STEP",
                        help="the refinement's Adam step in latent units per coordinate "
                             "(0.03 keeps the faintest galaxies' noise out of the refined "
                             "encodings)" + (where or f"; default {REFINE_RATE:g}"))
    parser.add_argument("--flow-select", choices=SELECTIONS, default=default("nll"),
                        help="the flow epoch kept: nll, the lowest validation NLL; observed, "
                             "the one whose samples, observed like 2,000 validation galaxies "
                             "(their PSF, noise, conditions), are closest to those galaxies "
                             "by the evaluation report's targets; morphology, the one whose "
                             "PSF-free decoded samples' |g| and sizes are closest to the "
                             "decoded validation encodings' (scored every 5 epochs)"
                             + (where or "; default nll"))
    parser.add_argument("--flow-condition-shift", action=argparse.BooleanOptionalAction,
                        default=default(False),
                        help="shift the flow's latents by a trainable linear function of "
                             "the conditions, started at the encodings' least-squares "
                             "regression on them (the latents' mean then follows the "
                             "conditions to first order)" + (where or "; default off"))
    parser.add_argument("--flow-fresh-samples", action=argparse.BooleanOptionalAction,
                        default=default(False),
                        help="fit the flow to a fresh posterior sample of every encoding "
                             "each epoch (the aggregate posterior as a density) instead of "
                             "one fixed sample" + (where or "; default off"))
    parser.add_argument("--flow-balance", type=float, default=default(0.0), metavar="POWER",
                        help="weigh each encoding in the flow's fit by its conditions' "
                             "inverse density to this power (0-1; 0.5 is a good start): "
                             "the flow follows the sparse conditions (the largest, brightest "
                             "galaxies) more closely" + (where or "; default 0, off"))
    parser.add_argument("--flow-orientation", choices=("all", "canonical"),
                        default=default("all"),
                        help="fit the flow to every encoded orientation of each stamp (all) "
                             "or to the two whose shear has g1, g2 >= 0 (canonical; only "
                             "those are encoded, the first only with --flow-orientations 1; "
                             "a quarter of the fit's time): the flow models "
                             "each galaxy once instead of as a ring of turned copies, and "
                             "generation turns each galaxy to a uniformly random angle "
                             "either way" + (where or "; default all"))
    parser.add_argument("--flow-orientations", type=int, default=None, metavar="N",
                        help="encode each training stamp in the first N of its eight "
                             "orientations for the flow prior's fit (1-8; default: 8 with "
                             "--augment, else 1); fewer cost less encoding time, mostly with "
                             "--flow-refine-steps")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train", help="train a VAE on a data set and write a model bundle",
        description="Train a TFP VAE on a galsim-vae data set: beta and learning-rate "
                    "schedules, a checkpoint per epoch (--resume continues), logs "
                    "(history.csv, TensorBoard, loss curves), a flow prior fitted after "
                    "training, and a model bundle with its model card.")
    parser.add_argument("dataset", metavar="DATASET", help="data set folder")
    parser.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to write")
    parser.add_argument("--model", default="cvae2", choices=("vae", "cvae", "cvae2", "fancy_cvae"),
                        help="architecture (default: cvae2)")
    parser.add_argument("--conditions", nargs="*", default=None, metavar="COLUMN",
                        help="condition columns, redshift first (default: zphot; none for vae)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs (default: 100)")
    parser.add_argument("--batch-size", type=int, default=64, help="galaxies per step (default: 64)")
    parser.add_argument("--beta", default="0.1",
                        help="KL weight: 0.1, one per epoch 0.1,0.2,..., warmup:MAX:N[:START], "
                             "linear:START:END:N or cyclical:MAX:PERIOD[:RATIO] (default: 0.1)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    parser.add_argument("--lr-decay", default=None,
                        help="per-epoch factor (0.97) or plateau[:FACTOR[:PATIENCE[:MIN_LR]]]")
    parser.add_argument("--clip-norm", type=float, default=None,
                        help="clip each step's gradients to this global norm (default: none)")
    parser.add_argument("--patience", type=int, default=None,
                        help="early-stopping patience in epochs (default: none)")
    parser.add_argument("--latent-size", type=int, default=32, help="latent dimension (default: 32)")
    parser.add_argument("--channels", type=_widths("--channels", "16,32,64,128"), default=None,
                        help="encoder widths, e.g. 16,32,64,128 (default: the model's)")
    parser.add_argument("--upsampling", choices=("transpose", "resize"), default=None,
                        help="decoder up-sampling: transposed convolutions (default, the "
                             "seed's) or resize + convolution (no checkerboard artefacts)")
    parser.add_argument("--decoder", choices=("conv", "subpixel"), default=None,
                        help="decoder's last stage: conv (default: a full-resolution stage "
                             "and 3x3 output convolution) or subpixel (a 3x3 convolution to "
                             "2x2 sub-pixels at half resolution: about twice as fast)")
    parser.add_argument("--no-full-resolution-norm", dest="full_resolution_norm",
                        action="store_false", default=None,
                        help="no GroupNormalization in the decoder's last, full-resolution "
                             "stage (about twice as fast to decode at 128x128)")
    parser.add_argument("--output-activation", choices=("softplus", "linear"), default=None,
                        help="decoder output: softplus (default, non-negative) or linear")
    parser.add_argument("--model-error", type=float, default=None, metavar="FRACTION",
                        help="fractional model error added to each pixel's noise (e.g. 0.03): "
                             "caps the weight of very bright pixels (default: 0)")
    parser.add_argument("--flux-condition", default=None, metavar="COLUMN",
                        help="magnitude condition (e.g. mag_auto) that sets each stamp's flux "
                             "scale: the networks see flux-normalised stamps; if it is not "
                             "among --conditions it is added as a drawn condition (the bundle "
                             "draws it from its training distribution given the redshift "
                             "for users who leave it out)")
    parser.add_argument("--augment", action="store_true",
                        help="train on the 8 rotations/flips of each stamp and its PSF "
                             "(an isotropic model; needs odd PSF sizes)")
    parser.add_argument("--monitor", choices=("median", "mean"), default="median",
                        help="validation figure for early stopping, plateau decay and the "
                             "best epoch: median (default, robust to very bright galaxies) "
                             "or mean per-galaxy loss")
    parser.add_argument("--likelihood", choices=tuple(LIKELIHOODS), default=None,
                        help="psf: PSF-free profiles, the likelihood convolves each galaxy's PSF "
                             "(default when the data set has PSFs); noise: no PSF, samples "
                             "carry the HST PSF")
    parser.add_argument("--no-flow-prior", action="store_true",
                        help="keep the N(0, I) prior (no flow fitted after training)")
    add_flow_arguments(parser, defaults=True)
    parser.add_argument("--noise-correlation", action="store_true",
                        help="whiten each residual by the galaxy's noise power spectrum (the "
                             "drizzled HST noise is correlated; Lanusse et al. 2021's Fourier "
                             "likelihood); needs a data set prepared with its noise models")
    parser.add_argument("--seed", type=int, default=None, help="seed (reproducible runs)")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="checkpoints and logs (default: BUNDLE.checkpoints)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run checkpointed in the checkpoint folder")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="float16 compute with loss scaling (GPUs)")
    parser.add_argument("--xla", action="store_true", help="XLA-compile the train step")
    parser.add_argument("--strategy", choices=STRATEGIES, default="auto",
                        help="auto: all GPUs of this host (MirroredStrategy) or one device; "
                             "mirrored: MirroredStrategy; multiworker: "
                             "MultiWorkerMirroredStrategy over the workers of TF_CONFIG or of "
                             "a Slurm job step, each running this command (needs --seed); "
                             "--batch-size is then the global batch (default: auto)")
    parser.add_argument("--max-steps-per-epoch", type=int, default=None,
                        help="cap on training steps per epoch")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing bundle (and checkpoint folder without --resume)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``galsim-vae train``."""
    from ..training import train

    conditions = args.conditions
    if conditions is not None and len(conditions) == 0:
        conditions = ()
    psf_free = None if args.likelihood is None else LIKELIHOODS[args.likelihood]
    model_options = {key: value for key, value in (
        ("upsampling", args.upsampling), ("output_activation", args.output_activation),
        ("decoder", args.decoder),
        ("full_resolution_norm", args.full_resolution_norm),
        ("model_error", args.model_error)) if value is not None}
    out = train(args.dataset, args.out, architecture=args.model, conditions=conditions,
                latent_size=args.latent_size, channels=args.channels, psf_free=psf_free,
                epochs=args.epochs, batch_size=args.batch_size, beta=args.beta,
                learning_rate=args.lr, lr_decay=args.lr_decay, clip_norm=args.clip_norm,
                early_stopping_patience=args.patience, seed=args.seed,
                checkpoint_dir=args.checkpoint_dir, resume=args.resume,
                flow_prior=not args.no_flow_prior, flow_prior_epochs=args.flow_epochs,
                flow_refine_steps=args.flow_refine_steps, flow_refine_rate=args.flow_refine_rate,
                flow_orientations=args.flow_orientations, flow_select=args.flow_select,
                flow_prior_units=args.flow_units, flow_prior_couplings=args.flow_couplings,
                flow_prior_spline_bins=args.flow_spline_bins,
                flow_condition_shift=args.flow_condition_shift,
                flow_fresh_samples=args.flow_fresh_samples, flow_balance=args.flow_balance,
                flow_orientation=args.flow_orientation,
                mixed_precision=args.mixed_precision,
                xla=args.xla, max_steps_per_epoch=args.max_steps_per_epoch,
                overwrite=args.overwrite, model_options=model_options or None,
                monitor=args.monitor, augment=args.augment,
                flux_condition=args.flux_condition, strategy=args.strategy,
                noise_correlation=args.noise_correlation)
    cluster = cluster_from_environment(args.strategy)
    if cluster is None or cluster.is_chief:          # the other workers write nothing
        print(f"wrote model bundle {out}")
    return 0
