"""Test-wide settings: never touch the network, never write to the user's Hugging Face cache."""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="tireid-hf-home-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
