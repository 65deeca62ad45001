"""ganlib: the GPU-capable GAN training implementations behind the book.

Subpackages: ``data`` (offline datasets and 2-D mixtures), ``models`` (MLP and
DCGAN-style networks), ``losses`` (d_*/g_* pairs on logits), ``regularizers``,
``training`` (the resumable Trainer and paper schemes), ``metrics``, ``viz`` and
``book`` (chapter helpers).

Bad input is refused early and by name (``ValueError``/``TypeError`` naming the parameter;
numbers given as strings are parsed), checkpoints are verified and refused with
``CheckpointError`` naming the file; the full contract is in :mod:`ganlib.training`'s
docstring and the shared checks in :mod:`ganlib.validation`.
"""

__version__ = "0.1.0"
