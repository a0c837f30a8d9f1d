"""Test-wide settings (never touch the network, never write to the user's Hugging Face cache) and the
small synthetic test split that several files search with real tiny models."""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="tireid-hf-home-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


import pytest  # noqa: E402  (after the environment is set)

# A small synthetic dataset: 5 test identities x 2 images, 2 captions each (20 queries, 10 images).
SMALL_SYNTHETIC = {"num_train_ids": 4, "num_validation_ids": 3, "num_test_ids": 5, "images_per_id": 2, "seed": 1}


@pytest.fixture(scope="session")
def small_test_split():
    from tireid_hf.data import load_tireid_dataset

    return load_tireid_dataset("synthetic", **SMALL_SYNTHETIC)["test"]


@pytest.fixture(scope="session")
def tiny_processor():
    from tester import IMAGE_SIZE
    from tireid_hf.processing import TIReIDProcessor

    return TIReIDProcessor.for_image_size(IMAGE_SIZE)


@pytest.fixture(scope="session")
def small_synthetic_options() -> list[str]:
    """``--option KEY=VALUE`` arguments of the tireid commands for SMALL_SYNTHETIC."""
    return [argument for key, value in SMALL_SYNTHETIC.items() for argument in ("--option", f"{key}={value}")]
