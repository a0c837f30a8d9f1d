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
from hypothesis import HealthCheck, settings  # noqa: E402

# Property-based tests (hypothesis): by default the SAME examples on every run (derandomize, no example
# database), a bounded number of them, and nothing timed (no per-example deadline, no too-slow health
# check), so a loaded machine never fails a test on time. HYPOTHESIS_PROFILE=explore draws fresh random
# examples, many more, for a local hunt; a failure prints the example to add as an @example.
settings.register_profile("ci", derandomize=True, database=None, max_examples=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("explore", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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
