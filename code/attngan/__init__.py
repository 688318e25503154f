"""AttnGAN and DualAttnGAN text-to-image synthesis, ported faithfully to Python 3 and current PyTorch.

The pipeline, one folder or module per stage: ``data`` (datasets, captions, the toy set) -> ``models`` /
``dualAttnModel`` / ``GlobalAttention`` (networks, built from a config by ``build``) -> ``losses`` ->
``engine`` (the one trainer and what it uses) driving the tasks ``damsm`` and ``gan`` -> ``sampling`` and
``viz`` (pictures) -> ``metrics`` (FID, IS, R-precision). ``cli`` and ``commands`` are the command lines.
"""
__version__ = '0.2.0'
