"""Configuration of `uit` (UIT, arXiv 2307.09059; published as SEN). Remote code."""

from __future__ import annotations

from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from .configuration_tireid import TIReIDConfig

GREY_INPUTS = ("normalised", "pixel")

# OpenAI CLIP's normalisation (what TIReIDProcessor applies); the restoration task undoes it.
CLIP_IMAGE_MEAN = tuple(OPENAI_CLIP_MEAN)
CLIP_IMAGE_STD = tuple(OPENAI_CLIP_STD)


class UITConfig(TIReIDConfig):
    r"""UIT: CLIP dual encoder + text-guided image restoration (TIR) + hardest-negative cross-modal
    triplet loss + key-word text augmentation. Defaults follow the reference script (run_SEN.sh):
    total loss ``sdm + id + 10 * triplet + 10 * tir``.

    Args:
        sdm_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the similarity distribution matching loss (`sdm`).
        id_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the identity loss (`id`, one classifier shared by both modalities; needs `num_ids` > 0).
        triplet_loss_weight (`float`, *optional*, defaults to 10.0):
            Weight of the cross-modal triplet loss on the hardest in-batch negatives (`triplet`).
        triplet_margin (`float`, *optional*, defaults to 0.05):
            Margin of the triplet loss on ``1 - cos`` distances.
        tir_loss_weight (`float`, *optional*, defaults to 10.0):
            Weight of the text-guided image restoration loss (`tir`). 0 switches the task off and the
            restoration decoder is not built.
        use_tir (`bool`, *optional*, defaults to `True`):
            Build the restoration decoder and compute `tir` (the ablation switch of the component;
            ``use_tir=False`` is the same model as ``tir_loss_weight=0``).
        tir_mask_ratio (`float`, *optional*, defaults to 0.7):
            Mask ratio of the grey image. As SEN, which draws it over the class token and the P patches
            together and always keeps the class token, ``int((1 + P) * (1 - ratio)) - 1`` patches are
            kept (56 of 192 for ViT-B/16 at 384x128; at least one kept and one dropped).
        tir_grey_input (`str`, *optional*, defaults to `"normalised"`):
            How the grey image is made from the normalised colour image ``x``. `"normalised"` (SEN):
            ``g = 0.2989 x_R + 0.587 x_G + 0.114 x_B`` on the normalised channels, replicated to 3
            channels. `"pixel"` (the zoo's variant): the same luma in [0, 1] pixel space (``x * std +
            mean``), replicated and normalised again per channel, so the encoder sees a true grey image.
        tir_text_bottleneck (`bool`, *optional*, defaults to `True`):
            SEN's text bottleneck: the decoder's image tokens are replaced by their cross-attention
            read-out of the caption (no residual), so restoration must go through the text. `False`
            keeps them through a residual cross-attention layer (+ MLP), the ablation variant.
        tir_decoder_width (`int`, *optional*):
            Width of the restoration decoder; defaults to the joint width ``clip_config.projection_dim``
            (512 for ViT-B/16, as the reference code). Must divide by ``tir_decoder_heads`` and by 4
            (the 2-D sin-cos position embedding).
        tir_decoder_heads (`int`, *optional*, defaults to 8):
            Attention heads of the decoder (the reference uses width / 64 = 8).
        tir_decoder_layers (`int`, *optional*, defaults to 4):
            Self-attention layers after the text cross-attention block.
        tir_decoder_mlp_ratio (`float`, *optional*, defaults to 4.0):
            Hidden width of the decoder's feed-forward blocks over its width.
        image_mean (`tuple[float, float, float]`, *optional*, defaults to CLIP's mean):
            Per-channel mean the processor subtracted from ``pixel_values`` (undone to make the grey image).
        image_std (`tuple[float, float, float]`, *optional*, defaults to CLIP's std):
            Per-channel std the processor divided ``pixel_values`` by.
        key_word_augmentation_probability (`float`, *optional*, defaults to 0.2):
            Probability per training caption of keeping only its key words (nouns, adjectives,
            pronouns); applied by the training collator (``text_transforms``), not by the model.

    Inherits every field of [`TIReIDConfig`] (`clip_config`, `image_size`, `temperature`, `num_ids`, ...).

    Example:

    ```python
    >>> from tireid_hf.modeling import UITConfig, UITModel
    >>> model = UITModel(UITConfig(num_ids=11003))  # ViT-B/16 shapes, random weights
    >>> ablation = UITModel(UITConfig(num_ids=11003, use_tir=False, triplet_loss_weight=0.0))
    ```
    """

    model_type = "tireid-uit"
    # the paper's contribution: text-guided image restoration
    zoo_contribution = "no restoration (TIR)"
    # the zoo's facts (see TIReIDConfig): ablation rows, sweep knobs, the paper's reported figures
    zoo_ablations = {
        "no restoration (TIR)": {"use_tir": False, "tir_loss_weight": 0.0},
        "no triplet": {"triplet_loss_weight": 0.0},
        "no key-word augmentation": {"key_word_augmentation_probability": 0.0},
        # everything UIT adds over IRRA's SDM + ID off: the baseline's training on UIT's embedding
        "none of its additions": {"use_tir": False, "tir_loss_weight": 0.0, "triplet_loss_weight": 0.0,
                                  "key_word_augmentation_probability": 0.0},
    }
    zoo_sweep = ("tir_loss_weight",)
    zoo_reported = {"backbone": "SEN version, ViT-B/16", "cuhk-pedes": "75.00 / 67.23",
                    "icfg-pedes": "64.56 / 40.80", "rstpreid": "61.60 / 48.62"}

    sdm_loss_weight: float = 1.0
    id_loss_weight: float = 1.0
    triplet_loss_weight: float = 10.0
    triplet_margin: float = 0.05
    tir_loss_weight: float = 10.0
    use_tir: bool = True
    tir_mask_ratio: float = 0.7
    tir_grey_input: str = "normalised"
    tir_text_bottleneck: bool = True
    tir_decoder_width: int | None = None
    tir_decoder_heads: int = 8
    tir_decoder_layers: int = 4
    tir_decoder_mlp_ratio: float = 4.0
    image_mean: list[float] | tuple[float, float, float] = CLIP_IMAGE_MEAN
    image_std: list[float] | tuple[float, float, float] = CLIP_IMAGE_STD
    key_word_augmentation_probability: float = 0.2

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.image_mean = tuple(float(value) for value in self.image_mean)
        self.image_std = tuple(float(value) for value in self.image_std)
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ValueError(
                f"image_mean and image_std must be 3 values (RGB), std > 0; got {self.image_mean}, {self.image_std}"
            )
        if not 0.0 <= self.key_word_augmentation_probability <= 1.0:
            raise ValueError(
                f"key_word_augmentation_probability must lie in [0, 1], got {self.key_word_augmentation_probability}"
            )
        if self.tir_grey_input not in GREY_INPUTS:
            raise ValueError(f"tir_grey_input must be one of {GREY_INPUTS}, got {self.tir_grey_input!r}")
        if self.triplet_margin < 0:
            raise ValueError(f"triplet_margin must be >= 0, got {self.triplet_margin}")
        width = self.decoder_width
        if width <= 0 or width % 4 or width % self.tir_decoder_heads:
            raise ValueError(
                f"tir_decoder_width ({width}) must be a positive multiple of 4 (2-D sin-cos positions) and of "
                f"tir_decoder_heads ({self.tir_decoder_heads})"
            )
        if self.tir_decoder_layers < 0:
            raise ValueError(f"tir_decoder_layers must be >= 0, got {self.tir_decoder_layers}")
        num_patches = self.grid_size[0] * self.grid_size[1]
        if not 0 < self.num_kept_patches < num_patches:
            raise ValueError(
                f"tir_mask_ratio={self.tir_mask_ratio} keeps {self.num_kept_patches} of the {num_patches} patches of "
                f"image_size={self.image_size}; at least one patch must be kept and one dropped"
            )

    @property
    def decoder_width(self) -> int:
        """Width of the restoration decoder (``tir_decoder_width`` or the joint width)."""
        return self.tir_decoder_width or self.embed_dim

    @property
    def num_kept_patches(self) -> int:
        """Patches of the grey image the encoder sees besides the class token, SEN's count:
        ``int((1 + rows * cols) * (1 - tir_mask_ratio)) - 1``."""
        rows, cols = self.grid_size
        return int((1 + rows * cols) * (1.0 - self.tir_mask_ratio)) - 1


UITConfig.register_for_auto_class()
