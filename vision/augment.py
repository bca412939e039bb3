"""Small random affine distortions (shift, rotation, scale) of image batches, in NumPy and in torch.

Handwriting changes little under a 2-3 pixel shift or a 10 degree turn, so these enlarge a small
training set cheaply. Both versions draw the same distribution; the torch one runs on the model's
device (no torchvision: it is not installable beside every torch build).
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Uniform ranges: shift in pixels (each axis), rotation in degrees, scale as a +/- fraction."""

    max_shift_px: float = 0.0
    max_rotation_deg: float = 0.0
    max_scale: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.max_shift_px > 0 or self.max_rotation_deg > 0 or self.max_scale > 0


NO_AUGMENT = AugmentConfig()
SHIFT_ROTATE = AugmentConfig(max_shift_px=2.0, max_rotation_deg=10.0, max_scale=0.08)


def sample_affine(config: AugmentConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2, 3) float32 matrices mapping output pixel offsets (from the centre) to input offsets."""
    angle = np.deg2rad(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg, n))  # (n,)
    scale = 1.0 + rng.uniform(-config.max_scale, config.max_scale, n)  # (n,)
    shift = rng.uniform(-config.max_shift_px, config.max_shift_px, (n, 2))  # (n, 2)
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    matrix = np.empty((n, 2, 3), dtype=np.float32)
    matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 0, 2] = cos, -sin, shift[:, 0]
    matrix[:, 1, 0], matrix[:, 1, 1], matrix[:, 1, 2] = sin, cos, shift[:, 1]
    return matrix


def augment_numpy(images: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Warp a batch with bilinear sampling and zero fill. images: (B, H, W) float32 → (B, H, W) float32."""
    if not config.enabled:
        return images
    n, height, width = images.shape
    matrix = sample_affine(config, n, rng)  # (B, 2, 3)
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    grid = np.stack([xs.ravel() - centre_x, ys.ravel() - centre_y, np.ones(height * width, np.float32)])  # (3, P)
    source = matrix @ grid  # (B, 2, P) input offsets
    src_x, src_y = source[:, 0] + centre_x, source[:, 1] + centre_y  # (B, P)
    x0, y0 = np.floor(src_x), np.floor(src_y)
    wx, wy = src_x - x0, src_y - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    flat = images.reshape(n, -1)  # (B, H*W)
    rows = np.arange(n)[:, None]
    out = np.zeros((n, height * width), dtype=np.float32)
    for dy, dx, weight in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx), (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        x, y = x0 + dx, y0 + dy
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)  # zero fill outside
        index = np.where(inside, y * width + x, 0)
        out += np.where(inside, weight * flat[rows, index], 0.0)
    return out.reshape(n, height, width)


def torch_augmenter(config: AugmentConfig, seed: int):
    """A batch transform for common.training.fit: (B, 1, H, W) float tensor → same shape, warped."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)

    def transform(images: "torch.Tensor") -> "torch.Tensor":
        n, _, height, width = images.shape
        matrix = torch.from_numpy(sample_affine(config, n, rng)).to(images.device)  # (B, 2, 3) pixels
        # affine_grid works in [-1, 1] coordinates: a shift of t pixels is 2t / size.
        matrix[:, 0, 2] *= 2.0 / width
        matrix[:, 1, 2] *= 2.0 / height
        grid = F.affine_grid(matrix, list(images.shape), align_corners=False)  # (B, H, W, 2)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return transform if config.enabled else None
