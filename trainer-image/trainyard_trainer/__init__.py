"""Trainyard trainer: the PyTorch DDP trainer and compression stages run inside worker pods."""
