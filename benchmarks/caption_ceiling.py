"""How high R@1 can go on the synthetic test split when a model reads captions perfectly.

A caption states a SUBSET of its identity's attributes (``tireid_hf.data.synthetic.captions``), so
several identities of a gallery may fit it. The oracle here knows every gallery identity's attributes
(the generator's ground truth) and each caption's stated attributes, keeps the identities that agree
with everything the caption states, and ranks their images first, in random order. With the same
number of images for every identity (the synthetic data's ``images_per_id``), its expected R@1 is

    ceiling R@1 = 100 * mean over captions q of 1 / |{identities j : j agrees with every attribute q states}|

It is the ceiling of a model that uses what captions state and images show, nothing else (a model could
still read evidence from what a caption leaves unsaid, so it is not a bound on every model). The target
a run is judged by can then be read against what the data allows:

    python benchmarks/caption_ceiling.py                       # the configs' synthetic test split
    python benchmarks/caption_ceiling.py --identities 50 --draws 200
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from tireid_hf.data.synthetic import SyntheticConfig, generate_image, identities_by_split

from gallery_size import identity_draws, mean_and_range  # benchmarks/, next to this script

REPO = Path(__file__).resolve().parents[1]


def agrees(stated: dict, attributes: dict) -> bool:
    """Whether an identity's ``attributes`` agree with every attribute a caption ``stated`` (a value, or
    True for "has one" of an accessory whose colour the caption leaves unsaid)."""
    return all(bool(attributes[name]) if value is True else attributes[name] == value for name, value in stated.items())


def caption_ceiling_r1(stated: list[dict], gallery_attributes: list[dict]) -> float:
    """The oracle's expected R@1 (%) of captions stating ``stated`` against a gallery of identities with
    ``gallery_attributes`` (the same number of images each); every caption's own identity must be there."""
    counts = [sum(agrees(caption, attributes) for attributes in gallery_attributes) for caption in stated]
    if min(counts) == 0:
        raise ValueError("a caption agrees with no gallery identity: its own identity is not in the gallery")
    return 100 * statistics.fmean(1 / count for count in counts)


def test_split_captions(config: SyntheticConfig) -> tuple[list[dict], list[int], list[dict]]:
    """``(stated attributes of every caption, its pid, attributes of every identity)`` of the test split."""
    identities = identities_by_split(config)["test"]
    stated, pids = [], []
    for pid, identity in enumerate(tqdm(identities, desc="test captions", unit="id")):
        for index in range(config.images_per_id):
            for caption in generate_image(identity, config, "test", pid, index)[1]:
                stated.append(caption.mentions)
                pids.append(pid)
    return stated, pids, [identity.as_dict() for identity in identities]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "clip_reid_synthetic.yaml",
                        help="a synthetic training config: its dataset_options give the split")
    parser.add_argument("--identities", type=int, help="also score random sub-galleries of this many identities")
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    options = yaml.safe_load(args.config.read_text()).get("dataset_options") or {}
    stated, pids, attributes = test_split_captions(SyntheticConfig(**options))
    print(f"caption ceiling, whole test split ({len(attributes)} identities, {len(stated)} captions): "
          f"R@1 {caption_ceiling_r1(stated, attributes):.2f}")
    if args.identities:  # the sub-galleries drawn as gallery_size.py draws them
        values = []
        for chosen in identity_draws(torch.tensor(pids), args.identities, args.draws):
            chosen = set(chosen.tolist())
            values.append(caption_ceiling_r1([caption for caption, pid in zip(stated, pids) if pid in chosen],
                                             [attributes[pid] for pid in sorted(chosen)]))
        mean, low, high = mean_and_range(values)
        print(f"caption ceiling, {args.draws} random {args.identities}-identity sub-galleries: R@1 mean "
              f"{mean:.2f} (2.5-97.5 %: {low:.2f}-{high:.2f})")


if __name__ == "__main__":
    main()
