"""Evaluation metrics: FID (standard TTUR / pytorch-fid and legacy DM-GAN protocols),
Inception Score, and R-precision.

Submodules: ``inception`` (networks and weight lookup), ``fid``, ``inception_score``,
``r_precision`` (the protocol on features), ``r_precision_gen`` (generate, encode, score) and
``toy_follow`` (do toy samples show the colours their captions name). Nothing is imported
eagerly beyond these names, so ``import attngan.metrics`` stays cheap.
"""
__all__ = ['inception', 'fid', 'inception_score', 'r_precision', 'r_precision_gen', 'toy_follow']
