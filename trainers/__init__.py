"""Trainers: the DeepSpeed SFT recipe and its configs."""
