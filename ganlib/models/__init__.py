"""Networks: MLPs for 2-D data, DCGAN-style conv nets for small images, the progressively
grown ProGAN networks, and the layers they share (self-attention, ProGAN layers)."""

from .dcgan import DCGANDiscriminator, DCGANGenerator
from .embedding import EmbeddingDiscriminator
from .layers import (EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm, SelfAttention2d,
                     attention_readout, spectral_norm_all)
from .mlp import MLPDiscriminator, MLPGenerator
from .progressive import ProgressiveDiscriminator, ProgressiveGenerator

__all__ = ["MLPGenerator", "MLPDiscriminator", "DCGANGenerator", "DCGANDiscriminator",
           "ProgressiveGenerator", "ProgressiveDiscriminator", "SelfAttention2d", "MinibatchStdDev",
           "PixelNorm", "EqualizedLinear", "EqualizedConv2d", "attention_readout", "spectral_norm_all", "EmbeddingDiscriminator"]
