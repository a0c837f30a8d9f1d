"""tireid-hf: a Hugging Face-native model zoo for text-to-image person re-identification."""

__version__ = "0.1.0"
