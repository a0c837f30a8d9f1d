"""tireid-hf: a Hugging Face-native model zoo for text-to-image person re-identification.

Importing the package registers every method with ``AutoConfig``, ``AutoModel`` and
``AutoProcessor``, so ``AutoModel.from_pretrained(folder)`` returns the right class.
"""

from transformers import AutoConfig, AutoModel, AutoProcessor

from .modeling import METHODS, TIReIDConfig, TIReIDOutput, TIReIDPreTrainedModel
from .processing import TIReIDProcessor

__version__ = "0.1.0"

for _config_class, _model_class in METHODS.values():
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModel.register(_config_class, _model_class, exist_ok=True)
    AutoProcessor.register(_config_class, TIReIDProcessor, exist_ok=True)

__all__ = ["METHODS", "TIReIDConfig", "TIReIDOutput", "TIReIDPreTrainedModel", "TIReIDProcessor", "__version__"]
