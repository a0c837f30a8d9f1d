"""Identity-aware batch sampling (P identities x K instances), correct under distributed training."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np

from ..errors import TIReIDInputError


def identities_per_batch(batch_size: int, instances_per_identity: int) -> int:
    """P of a P x K batch: ``batch_size / instances_per_identity``. A
    :class:`~tireid_hf.errors.TIReIDInputError` names ``per_device_train_batch_size`` and
    ``instances_per_identity`` unless K >= 1 divides a batch size >= 1."""
    if instances_per_identity < 1 or batch_size < 1 or batch_size % instances_per_identity:
        raise TIReIDInputError(
            f"per_device_train_batch_size ({batch_size}) must be a positive multiple of instances_per_identity "
            f"({instances_per_identity}, itself >= 1)"
        )
    return batch_size // instances_per_identity


class IdentityBatchSampler:
    """Batches of ``batch_size = P x K`` sample indices: P distinct identities, K samples each.

    Every epoch is a deterministic function of ``(seed, epoch)``, identical on every rank:

    1. each identity's samples are shuffled and cut into groups of K; the last group of an identity
       is topped up with other samples of that identity (drawn with replacement when it has fewer
       than K), so EVERY sample appears at least once per epoch;
    2. each batch takes one group from each of P distinct identities drawn at random among those
       with groups left; once fewer than P identities have groups left, their batches are topped up
       with a random group of other identities, so every batch has the same size;
    3. the batch list is padded (wrapping around, as often as needed) to a multiple of ``num_replicas``
       and rank r takes batches r, r + W, r + 2W, ...: ranks get distinct batches (when there are at
       least W) and always the same number of steps.

    ``K = 1`` gives plain random batches of distinct identities.

    Args:
        pids: identity of every sample (index = position).
        batch_size: samples per batch on one rank; a multiple of ``instances_per_identity``.
        instances_per_identity: K.
        seed: base seed; ``set_epoch`` selects the epoch.
        num_replicas / rank: distributed world size and this process' rank.
    """

    def __init__(self, pids: Sequence[int], batch_size: int, instances_per_identity: int, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0):
        self.identities_per_batch = identities_per_batch(batch_size, instances_per_identity)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.samples_by_pid: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            self.samples_by_pid[int(pid)].append(index)
        self.instances = instances_per_identity
        if len(self.samples_by_pid) < self.identities_per_batch:
            most = len(self.samples_by_pid) * instances_per_identity
            raise TIReIDInputError(
                f"a batch needs {self.identities_per_batch} distinct identities (per_device_train_batch_size "
                f"{batch_size} / instances_per_identity {instances_per_identity}) but the training data has "
                f"{len(self.samples_by_pid)}: lower --per_device_train_batch_size to {most} or below (a multiple of "
                f"{instances_per_identity}), or add identities"
            )
        self.seed, self.num_replicas, self.rank = seed, num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_batches(self) -> list[list[int]]:
        """All batches of the current epoch, before the split across ranks."""
        rng = np.random.default_rng([self.seed, self.epoch])
        groups_by_pid = {pid: self._groups(samples, rng) for pid, samples in self.samples_by_pid.items()}
        available = sorted(groups_by_pid)
        batches = []
        while available:
            take = min(self.identities_per_batch, len(available))
            chosen = sorted(rng.choice(len(available), take, replace=False), reverse=True)
            batch_pids = [available[position] for position in chosen]
            batch = []
            for position, pid in zip(chosen, batch_pids):
                batch.extend(groups_by_pid[pid].pop())
                if not groups_by_pid[pid]:
                    available.pop(position)
            fillers = [int(pid) for pid in rng.permutation(sorted(groups_by_pid)) if int(pid) not in batch_pids]
            for pid in fillers[: self.identities_per_batch - take]:
                batch.extend(self._groups(self.samples_by_pid[pid], rng)[0])
            batches.append(batch)
        return batches

    def _groups(self, samples: list[int], rng: np.random.Generator) -> list[list[int]]:
        """The identity's samples shuffled and cut into groups of K, the last one topped up."""
        order = [samples[i] for i in rng.permutation(len(samples))]
        groups = [order[start : start + self.instances] for start in range(0, len(order), self.instances)]
        missing = self.instances - len(groups[-1])
        if missing:
            pool = [index for index in samples if index not in groups[-1]] or samples
            groups[-1] = groups[-1] + [int(x) for x in rng.choice(pool, missing, replace=len(pool) < missing)]
        return groups

    def _rank_batches(self) -> list[list[int]]:
        batches = self.epoch_batches()
        total = -(-len(batches) // self.num_replicas) * self.num_replicas
        padded = [batches[position % len(batches)] for position in range(total)]  # wraps more than once if needed
        return padded[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._rank_batches())

    def __len__(self) -> int:
        return len(self._rank_batches())
