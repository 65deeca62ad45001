"""Networks: MLPs for 2-D data, DCGAN-style conv nets for small images, the progressively
grown ProGAN networks, VQ-VAE-2 and gated PixelCNN priors (PC-VQ2), and the layers they share."""

from .base import LatentGenerator, check_positive_ints
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .embedding import EmbeddingDiscriminator
from .layers import (EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm, SelfAttention2d,
                     attention_readout, spectral_norm_all)
from .mlp import MLPDiscriminator, MLPGenerator, TanhMLPGenerator
from .pixelcnn import GatedPixelCNN
from .progressive import ProgressiveDiscriminator, ProgressiveGenerator
from .vqvae2 import VQVAE2, VectorQuantizerEMA

__all__ = ["LatentGenerator", "check_positive_ints", "MLPGenerator", "TanhMLPGenerator", "MLPDiscriminator", "DCGANGenerator",
           "DCGANDiscriminator", "ProgressiveGenerator", "ProgressiveDiscriminator", "SelfAttention2d",
           "MinibatchStdDev", "PixelNorm", "EqualizedLinear", "EqualizedConv2d", "attention_readout",
           "spectral_norm_all", "EmbeddingDiscriminator", "VQVAE2", "VectorQuantizerEMA", "GatedPixelCNN"]
