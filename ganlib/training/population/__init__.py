"""One population core for every multi-model trainer: :class:`Stack` (P copies of one architecture),
:class:`StackedOptimizer` (Adam / RMSprop with a member mask), :class:`Population` (the one loop)
and the schemes that plug into it (:class:`Standard`, :class:`Packed`; the paper modules define
``Unrolled``, ``DGL``...)."""

from .core import Population
from .optim import StackedAdam, StackedOptimizer
from .schemes import Packed, Scheme, Standard, grouped_losses
from .stack import Stack, grouped_mlp, stacked_spectral_norm

__all__ = ["Population", "Stack", "StackedOptimizer", "StackedAdam", "Scheme", "Standard", "Packed",
           "grouped_losses", "grouped_mlp", "stacked_spectral_norm"]
