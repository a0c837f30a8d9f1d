"""Hub integration: card rendering from `hub_cards/` and pushing to the Hugging Face Hub."""
