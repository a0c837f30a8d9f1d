"""The model code of the zoo. Every file here is also the remote code saved beside a checkpoint."""

from .base import TIReIDConfig, TIReIDOutput, TIReIDPreTrainedModel
from .configuration_clip_reid import ClipReIDConfig
from .modeling_clip_reid import ClipReIDModel
from .configuration_lgur import LGURConfig
from .modeling_lgur import LGURModel

# method name -> (config class, model class)
METHODS = {
    "clip_reid": (ClipReIDConfig, ClipReIDModel),
    "lgur": (LGURConfig, LGURModel),
}

__all__ = ["METHODS", "ClipReIDConfig", "ClipReIDModel", "LGURConfig", "LGURModel", "TIReIDConfig", "TIReIDOutput", "TIReIDPreTrainedModel"]
