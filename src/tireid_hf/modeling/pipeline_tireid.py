"""`TextToImageRetrievalPipeline`: the ``"text-to-image-retrieval"`` pipeline of every TIReID model. Remote code.

Saved beside every checkpoint (``config.json``'s ``custom_pipelines`` names it), so that without
tireid-hf::

    >>> from transformers import pipeline
    >>> retrieve = pipeline("text-to-image-retrieval", model="org/lcr2s-cuhk", trust_remote_code=True)
    >>> retrieve("a woman in a red coat", images=["a.jpg", "b.jpg", "c.jpg"], top_k=2)  # doctest: +SKIP
    [{'index': 2, 'score': 0.41}, {'index': 0, 'score': 0.12}]
"""

from __future__ import annotations

import os

import torch
from transformers import AutoModel, Pipeline
from transformers.image_utils import is_pil_image, load_image
from transformers.pipelines import PIPELINE_REGISTRY

TASK = "text-to-image-retrieval"
# The batch sizes of tireid-hf's gallery embedding (GalleryIndex.build / search), so both compute alike.
IMAGE_BATCH_SIZE = 64
TEXT_BATCH_SIZE = 256


class TextToImageRetrievalPipeline(Pipeline):
    """Ranks a gallery of images for each text by the cosine of the model's retrieval embeddings.

    ``scores = get_text_features(texts) @ get_image_features(images).T`` [T, G] (both L2-normalised),
    then each row's ``top_k`` highest scores, best first: what tireid-hf's ``GalleryIndex.search``
    returns with the exact float32 backend. The processor saved beside the model tokenises the texts
    (padded, truncated to the model's length) and resizes and normalises the images.
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __call__(self, texts, images=None, top_k: int = 5, **kwargs):
        """Ranks ``images`` for each of ``texts``.

        Args:
            texts (`str` or `list[str]`): one query or several.
            images (`list`): the gallery, G items, each a PIL image or the path of an image file.
            top_k (`int`, *optional*, defaults to 5): how many gallery items to return per text
                (all G when G is smaller).

        Returns:
            For one text, a list of ``min(top_k, G)`` dicts ``{"index": position in images, "score":
            cosine}``, best first; for a list of texts, one such list per text.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else texts
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise ValueError(f"`texts` must be a non-empty string or a non-empty list of them, got {texts!r}")
        if not isinstance(images, (list, tuple)) or not images:
            raise ValueError("`images` must be a non-empty list of PIL images or image file paths (the gallery), "
                             f"got {type(images).__name__}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"`top_k` must be a positive integer, got {top_k!r}")
        ranked = super().__call__({"texts": list(texts), "images": list(images)}, top_k=top_k, **kwargs)
        return ranked[0] if single else ranked

    def _sanitize_parameters(self, top_k=None):
        return {}, {}, ({} if top_k is None else {"top_k": top_k})

    def preprocess(self, inputs):
        """Tokens of the texts and pixel values of the images, in batches of the sizes tireid-hf uses."""
        texts, images = inputs["texts"], [_load(image, position) for position, image in enumerate(inputs["images"])]
        text_batches = [self.processor(text=texts[start:start + TEXT_BATCH_SIZE], padding=True, truncation=True,
                                       return_tensors="pt") for start in range(0, len(texts), TEXT_BATCH_SIZE)]
        return {
            "texts": [{"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]} for batch in text_batches],
            "pixel_values": [self.processor(images=images[start:start + IMAGE_BATCH_SIZE], return_tensors="pt")["pixel_values"]
                             for start in range(0, len(images), IMAGE_BATCH_SIZE)],
        }

    def _forward(self, model_inputs):
        text_embeds = torch.cat([self.model.get_text_features(**batch).float() for batch in model_inputs["texts"]])
        image_embeds = torch.cat([self.model.get_image_features(pixel_values=batch).float()
                                  for batch in model_inputs["pixel_values"]])
        return {"scores": text_embeds.cpu() @ image_embeds.cpu().T}

    def postprocess(self, model_outputs, top_k: int = 5):
        scores, indices = model_outputs["scores"].topk(min(top_k, model_outputs["scores"].shape[1]), dim=1)
        return [[{"index": index, "score": score} for index, score in zip(row_indices, row_scores)]
                for row_indices, row_scores in zip(indices.tolist(), scores.tolist())]


def _load(image, position: int):
    """A gallery item as a PIL image: a PIL image as given, a path opened (EXIF orientation applied, RGB)."""
    if is_pil_image(image):
        return image
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise ValueError(f"`images[{position}]`: no image file at {os.fspath(image)!r}")
        return load_image(os.fspath(image))
    raise TypeError(f"`images[{position}]` must be a PIL image or an image file path, got {type(image).__name__}")


def custom_pipelines() -> dict:
    """The ``custom_pipelines`` entry of ``config.json`` naming this pipeline, as
    ``Pipeline.save_pretrained`` writes it: ``{task: {"impl": "<module>.<class>", "pt": [...], "type": ...}}``."""
    return {TASK: {"impl": f"{__name__.rsplit('.', 1)[-1]}.{TextToImageRetrievalPipeline.__name__}",
                   "pt": ["AutoModel"], "type": "multimodal"}}


if TASK not in PIPELINE_REGISTRY.supported_tasks:  # a remote copy loaded beside tireid_hf leaves tireid_hf's in place
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=TextToImageRetrievalPipeline, pt_model=AutoModel,
                                        type="multimodal")
