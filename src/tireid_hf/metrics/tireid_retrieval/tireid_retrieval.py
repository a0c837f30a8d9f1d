"""TIReID retrieval metrics (Rank-k, mAP, mINP, TPR at two false-positive rates) as an `evaluate` module.

A thin wrapper over :func:`ranking.rank_metrics`, the one implementation in tireid-hf, which sits
beside this script: `evaluate` copies both into its cache (a relative import), so the module needs
numpy, torch and evaluate, not tireid-hf.
"""

import datasets
import evaluate
import numpy as np

from .ranking import check_integer_pids, rank_metrics

_CITATION = """\
@article{ye2021deep,
  title={Deep Learning for Person Re-identification: A Survey and Outlook},
  author={Ye, Mang and Shen, Jianbing and Lin, Gaojie and Xiang, Tao and Shao, Ling and Hoi, Steven C. H.},
  journal={IEEE Transactions on Pattern Analysis and Machine Intelligence},
  year={2021}
}
"""

_DESCRIPTION = """\
Rank-k (R1, R5, R10), mAP and mINP of text-to-image person re-identification: each prediction is
one query's row of similarity scores against the whole gallery (higher = more similar), each
reference is that query's pid, and `gallery_pids` gives the pid of every gallery item. A gallery
item is relevant to a query when their pids are equal. Equal scores keep gallery order. Besides the
ranking, same-person decisions over all query-gallery pairs: TPR@FPR=1e-2 and TPR@FPR=1e-3, the share
of same-pid pairs accepted (score >= threshold) at the smallest score threshold whose false-positive
rate is at most that rate.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`, shape [Q, G]): similarity of each query to each
        gallery item.
    references (`list` of `int`, shape [Q]): pid of each query.
    gallery_pids (`list` of `int`, shape [G]): pid of each gallery item.
    ks (`list` of `int`, *optional*, defaults to `[1, 5, 10]`): the k of the `R{k}` keys.
    skip_queries_without_match (`bool`, *optional*, defaults to `False`): leave out (and count)
        queries whose pid has no gallery item instead of raising an error.
Returns:
    `R{k}` for each k, `mAP`, `mINP`, `TPR@FPR=1e-2`, `TPR@FPR=1e-3` (percentages, floats; the TPR
    keys over all query-gallery pairs, skipped queries' pairs included), `num_queries` (int) and,
    when skipping, `num_skipped_queries` (int).
Examples:
    >>> import evaluate, tireid_hf.metrics
    >>> metric = evaluate.load(tireid_hf.metrics.METRIC_PATH)
    >>> metric.compute(predictions=[[0.9, 0.5, 0.1], [0.2, 0.3, 0.8]], references=[0, 1],
    ...                gallery_pids=[0, 0, 1], ks=[1])
    {'R1': 100.0, 'mAP': 100.0, 'mINP': 100.0, 'TPR@FPR=1e-2': 100.0, 'TPR@FPR=1e-3': 100.0, 'num_queries': 2}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TIReIDRetrieval(evaluate.Metric):
    """Rank-k, mAP, mINP of ranking a gallery for each query and TPR@FPR of all pairs (see the metric card)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # float64 holds float32/float16 scores exactly, so the ranking (and its ties) is unchanged.
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://arxiv.org/abs/2001.04193"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """`evaluate`'s add_batch, refusing non-integer pids in words before its int64 cast does."""
        if references is not None:
            check_integer_pids(references, "references")
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, gallery_pids=None, ks=(1, 5, 10), skip_queries_without_match=False):
        if gallery_pids is None:
            raise ValueError("`gallery_pids` is required: the pid of every gallery item, shape [num_gallery]")
        if not len(predictions):
            raise ValueError("there are no queries: `predictions` and `references` are empty")
        check_integer_pids(gallery_pids, "gallery_pids")
        lengths = {len(row) for row in predictions}
        if len(lengths) > 1:
            raise ValueError(
                f"`predictions` rows must all have one score per gallery item; got row lengths {sorted(lengths)}"
            )
        similarity = np.asarray(predictions, dtype=np.float64).reshape(len(predictions), lengths.pop() if lengths else 0)
        return rank_metrics(
            similarity,
            np.asarray(references, dtype=np.int64),
            np.asarray(gallery_pids),
            ks=tuple(ks),
            skip_queries_without_match=skip_queries_without_match,
        )
