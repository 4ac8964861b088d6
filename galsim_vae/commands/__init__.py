"""Sub-commands of ``galsim-vae``: one module each, with ``add_parser(subparsers)``
(which sets ``run`` as the parser default) and ``run(args) -> int``."""
