"""tireid-hf: a Hugging Face-native model zoo for text-to-image person re-identification.

Importing the package registers every method with ``AutoConfig``, ``AutoModel`` and
``AutoProcessor``, so ``AutoModel.from_pretrained(folder)`` returns the right class.
"""

from .methods import register_method
from .modeling import METHODS, TIReIDConfig, TIReIDOutput, TIReIDPreTrainedModel
from .processing import TIReIDProcessor

__version__ = "0.1.0"

__all__ = ["METHODS", "TIReIDConfig", "TIReIDOutput", "TIReIDPreTrainedModel", "TIReIDProcessor", "__version__",
           "register_method"]
