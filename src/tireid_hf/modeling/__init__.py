"""The model code of the zoo. Every file here is also the remote code saved beside a checkpoint."""

from .base import TIReIDConfig, TIReIDOutput, TIReIDPreTrainedModel
from .configuration_cada import CADAConfig
from .configuration_clip_reid import ClipReIDConfig
from .modeling_cada import CADAModel
from .modeling_clip_reid import ClipReIDModel

# method name -> (config class, model class)
METHODS = {
    "clip_reid": (ClipReIDConfig, ClipReIDModel),
    "cada": (CADAConfig, CADAModel),
}

__all__ = ["METHODS", "CADAConfig", "CADAModel", "ClipReIDConfig", "ClipReIDModel", "TIReIDConfig", "TIReIDOutput", "TIReIDPreTrainedModel"]
