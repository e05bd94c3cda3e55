"""The PyTorch + diffusers engine."""
