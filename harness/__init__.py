"""skillmix-harness: SKILL-MIX evaluation, judging, data generation and fine-tuning."""

__version__ = "0.1.0"
