"""Hub integration: card rendering from the templates in `cards/` and pushing to the Hugging Face Hub."""

from pathlib import Path

CARDS = Path(__file__).resolve().parent / "cards"
"""The card templates (`model_card.md`, `dataset_card.md`) and one model-card section per method
(`methods/<method>.md`), shipped as package data."""
