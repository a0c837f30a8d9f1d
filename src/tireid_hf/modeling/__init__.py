"""The model code of the zoo. Every file here is also the remote code saved beside a checkpoint."""

from .base import PairFeatures, TIReIDOutput, TIReIDPreTrainedModel
from .configuration_cada import CADAConfig
from .configuration_clip_reid import ClipReIDConfig
from .configuration_lcr2s import LCR2SConfig
from .configuration_lgur import LGURConfig
from .configuration_tireid import TIReIDConfig
from .configuration_uit import UITConfig
from .modeling_cada import CADAModel
from .modeling_clip_reid import ClipReIDModel
from .modeling_lcr2s import LCR2SModel
from .modeling_lgur import LGURModel
from .modeling_uit import UITModel

# method name -> (config class, model class)
METHODS = {
    "clip_reid": (ClipReIDConfig, ClipReIDModel),
    "lcr2s": (LCR2SConfig, LCR2SModel),
    "cada": (CADAConfig, CADAModel),
    "lgur": (LGURConfig, LGURModel),
    "uit": (UITConfig, UITModel),
}

__all__ = [
    "METHODS",
    "CADAConfig",
    "CADAModel",
    "ClipReIDConfig",
    "ClipReIDModel",
    "LCR2SConfig",
    "LCR2SModel",
    "LGURConfig",
    "LGURModel",
    "PairFeatures",
    "TIReIDConfig",
    "TIReIDOutput",
    "TIReIDPreTrainedModel",
    "UITConfig",
    "UITModel",
]
