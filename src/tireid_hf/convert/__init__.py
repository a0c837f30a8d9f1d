"""Reference checkpoints -> models of the zoo (`tireid convert`).

* :func:`convert_irra`: IRRA-layout checkpoints (IRRA, RDE, SEN) -> `clip_reid` / `uit` folders.
* :func:`convert_openai_clip`: OpenAI's CLIP ViT files -> a `transformers` ``CLIPModel`` folder.

Unknown or missing tensors, shapes that do not fit and checkpoints of another architecture raise a
:class:`ConversionError` naming them; dropped heads are listed in the folder's ``conversion.json``.
"""

from .checkpoint_files import ConversionError, read_state_dict
from .folders import convert_irra, convert_openai_clip
from .irra import VARIANTS

__all__ = ["VARIANTS", "ConversionError", "convert_irra", "convert_openai_clip", "read_state_dict"]
