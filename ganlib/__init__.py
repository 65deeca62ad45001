"""ganlib: the GPU-capable GAN training implementations behind the book.

Subpackages: ``data`` (offline datasets and 2-D mixtures), ``models`` (MLP and
DCGAN-style networks), ``losses`` (d_*/g_* pairs on logits), ``regularizers``,
``training`` (the resumable Trainer and paper schemes), ``metrics``, ``viz`` and
``book`` (chapter helpers).
"""

__version__ = "0.1.0"
