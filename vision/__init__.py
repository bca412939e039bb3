"""Images to models to scores: KMNIST data, a NumPy MLP from first principles, PyTorch MLPs and CNNs."""
