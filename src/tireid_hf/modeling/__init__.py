"""The model code of the zoo. Every file here is also the remote code saved beside a checkpoint."""

from .base import TIReIDConfig, TIReIDOutput, TIReIDPreTrainedModel
from .configuration_clip_reid import ClipReIDConfig
from .modeling_clip_reid import ClipReIDModel
from .configuration_uit import UITConfig
from .modeling_uit import UITModel

# method name -> (config class, model class)
METHODS = {
    "clip_reid": (ClipReIDConfig, ClipReIDModel),
    "uit": (UITConfig, UITModel),
}

__all__ = ["METHODS", "ClipReIDConfig", "ClipReIDModel", "TIReIDConfig", "TIReIDOutput", "TIReIDPreTrainedModel", "UITConfig", "UITModel"]
