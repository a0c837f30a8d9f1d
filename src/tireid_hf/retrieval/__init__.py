"""Text-to-image search over an embedded gallery, and the one split-evaluation path.

* :mod:`.embedding`: ``embed_images`` / ``embed_texts`` in batches (sharded across processes with an
  Accelerate ``accelerator``) and ``model_fingerprint``.
* :mod:`.index`: :class:`GalleryIndex` embeds a gallery once (``build``), answers text queries with the
  top-k gallery ids and scores (``search``), re-ranks the top-k with a method's second stage
  (``rerank=True``), and persists itself (``save`` / ``load``), refusing an index built by another model.
* :mod:`.backends`: what ``GalleryIndex`` searches with, behind one interface: exact (float32, float16
  or int8) or FAISS.
* :mod:`.rerank`: a method's second stage (``supports_rerank``).
* :mod:`.evaluation`: :func:`evaluate_split`, which training and ``tireid evaluate`` both call, and
  :func:`matching_accuracy`.
* :mod:`.rerank_policy`: whether a trained second stage may re-rank test (:func:`rerank_refusal`,
  :func:`rerank_gain_refusal`, both on validation) and :func:`second_stage_results`, what it adds to a
  run's results.
"""

from .backends import PRECISIONS
from .embedding import embed_images, embed_texts, model_fingerprint
from .evaluation import evaluate_split, matching_accuracy, split_queries
from .index import GalleryIndex, SearchResults
from .rerank import supports_rerank
from .rerank_policy import rerank_gain_refusal, rerank_refusal, second_stage_results

__all__ = ["PRECISIONS", "GalleryIndex", "SearchResults", "embed_images", "embed_texts", "evaluate_split",
           "matching_accuracy", "model_fingerprint", "rerank_gain_refusal", "rerank_refusal", "second_stage_results",
           "split_queries", "supports_rerank"]
