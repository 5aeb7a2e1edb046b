"""Models: ResNet encoders by name (resnet.py), MLP heads (heads.py), ContrastiveNet (networks.py)."""

from contrastive_jax.models.heads import MLP
from contrastive_jax.models.networks import ContrastiveNet
from contrastive_jax.models.resnet import available_encoders, get_encoder

__all__ = ["MLP", "ContrastiveNet", "available_encoders", "get_encoder"]
