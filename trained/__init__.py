"""Model bundles shipped with galsim-vae.

Each sub-folder is a model bundle (``model.json`` + weights + model card), found by name
through :func:`galsim_vae.load_model`.  Installed as the package ``galsim_vae.trained``.
"""
