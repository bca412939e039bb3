"""Small random affine distortions (shift, rotation, scale) of image batches, in NumPy and in torch.

Handwriting changes little under a 2-3 pixel shift or a 10 degree turn, so these enlarge a small
training set cheaply. Both versions draw the same distribution; the torch one runs on the model's
device (no torchvision: it is not installable beside every torch build).
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Uniform ranges: shift in pixels (each axis), rotation in degrees, scale as a +/- fraction.

    ``elastic_px`` adds a smooth random displacement field (Simard et al. 2003, made cheap): uniform
    displacements of up to that many pixels at a 4x4 grid of control points, bilinearly upsampled.
    """

    max_shift_px: float = 0.0
    max_rotation_deg: float = 0.0
    max_scale: float = 0.0
    elastic_px: float = 0.0
    stroke_prob: float = 0.0  # probability of thickening strokes (3x3 dilation), and again of thinning them

    @property
    def enabled(self) -> bool:
        return (
            self.max_shift_px > 0
            or self.max_rotation_deg > 0
            or self.max_scale > 0
            or self.elastic_px > 0
            or self.stroke_prob > 0
        )


NO_AUGMENT = AugmentConfig()
SHIFT_ROTATE = AugmentConfig(max_shift_px=2.0, max_rotation_deg=10.0, max_scale=0.08)
# cnn-strong's warps: translation ±10% of the side (2.8 px), rotation ±0.15 rad, scale ±10%.
WARP = AugmentConfig(max_shift_px=2.8, max_rotation_deg=8.6, max_scale=0.10)
CONTROL_POINTS = 4


def upsample_matrix(size: int, n_points: int = CONTROL_POINTS) -> np.ndarray:
    """(size, n_points) linear interpolation weights, corners aligned (torch's align_corners=True)."""
    position = np.arange(size) * (n_points - 1) / (size - 1)  # (size,)
    low = np.minimum(np.floor(position).astype(int), n_points - 2)
    weights = np.zeros((size, n_points), np.float32)
    weights[np.arange(size), low] = 1 - (position - low)
    weights[np.arange(size), low + 1] = position - low
    return weights


def sample_displacement(
    config: AugmentConfig, n: int, height: int, width: int, rng: np.random.Generator
) -> np.ndarray | None:
    """(n, 2, H, W) float32 smooth displacements in pixels (x then y), or None when elastic is off."""
    if config.elastic_px <= 0:
        return None
    coarse = rng.uniform(-config.elastic_px, config.elastic_px, (n, 2, CONTROL_POINTS, CONTROL_POINTS)).astype(
        np.float32
    )
    return np.einsum("hi,bcij,wj->bchw", upsample_matrix(height), coarse, upsample_matrix(width))


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


def sample_stroke_ops(config: AugmentConfig, n: int, rng: np.random.Generator) -> np.ndarray | None:
    """(n,) int: +1 dilate, -1 erode, 0 keep; None when stroke changes are off."""
    if config.stroke_prob <= 0:
        return None
    u = rng.random(n)
    return np.where(u < config.stroke_prob, 1, np.where(u < 2 * config.stroke_prob, -1, 0))


def stroke_numpy(images: np.ndarray, ops: np.ndarray) -> np.ndarray:
    """Grey-level 3x3 dilation (ops == 1) or erosion (ops == -1) per image: pen width varies across writers.

    The window ignores pixels outside the image, as torch's max_pool2d does with its padding.
    """
    height, width = images.shape[1:]

    def windows(fill: float) -> np.ndarray:  # (9, B, H, W)
        padded = np.pad(images, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
        return np.stack([padded[:, dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)])

    out = images.copy()
    if (ops == 1).any():
        out[ops == 1] = windows(-np.inf)[:, ops == 1].max(axis=0)
    if (ops == -1).any():
        out[ops == -1] = windows(np.inf)[:, ops == -1].min(axis=0)
    return out


def augment_numpy(images: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Warp a batch with bilinear sampling and zero fill. images: (B, H, W) float32 → (B, H, W) float32."""
    if not config.enabled:
        return images
    n, height, width = images.shape
    ops = sample_stroke_ops(config, n, rng)
    if ops is not None:
        images = stroke_numpy(images, ops)
    matrix = sample_affine(config, n, rng)  # (B, 2, 3)
    return warp_numpy(images, matrix, sample_displacement(config=config, n=n, height=height, width=width, rng=rng))


def affine_matrix(
    rotation_deg: float = 0.0, scale: float = 1.0, shift_x_px: float = 0.0, shift_y_px: float = 0.0
) -> np.ndarray:
    """(2, 3) float32: one fixed warp in ``sample_affine``'s convention (output offsets → input offsets)."""
    angle = np.deg2rad(rotation_deg)
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    return np.array([[cos, -sin, shift_x_px], [sin, cos, shift_y_px]], np.float32)


def warp_numpy(images: np.ndarray, matrix: np.ndarray, displacement: np.ndarray | None = None) -> np.ndarray:
    """Bilinear warp with zero fill. images: (B, H, W) float32; matrix: (B, 2, 3) as from ``sample_affine``;
    displacement: (B, 2, H, W) pixels or None → (B, H, W) float32."""
    n, height, width = images.shape
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    grid = np.stack([xs.ravel() - centre_x, ys.ravel() - centre_y, np.ones(height * width, np.float32)])  # (3, P)
    source = matrix @ grid  # (B, 2, P) input offsets
    src_x, src_y = source[:, 0] + centre_x, source[:, 1] + centre_y  # (B, P)
    if displacement is not None:
        src_x, src_y = src_x + displacement[:, 0].reshape(n, -1), src_y + displacement[:, 1].reshape(n, -1)
    # Zero fill without masks: sample from a copy with a zero border and clip coordinates into it.
    # A point clipped onto the border reads zeros, exactly as grid_sample's padding_mode="zeros".
    pad = 2
    padded = np.zeros((n, height + 2 * pad, width + 2 * pad), np.float32)  # (B, H + 2p, W + 2p)
    padded[:, pad:-pad, pad:-pad] = images
    stride = width + 2 * pad
    src_x = np.clip(src_x + pad, 0, stride - 1.001)
    src_y = np.clip(src_y + pad, 0, height + 2 * pad - 1.001)
    x0, y0 = np.floor(src_x), np.floor(src_y)
    wx, wy = src_x - x0, src_y - y0  # (B, P) bilinear weights
    index = (np.arange(n)[:, None] * padded[0].size + y0.astype(np.int64) * stride + x0.astype(np.int64)).ravel()
    flat = padded.ravel()
    top = (1 - wx.ravel()) * flat[index] + wx.ravel() * flat[index + 1]
    bottom = (1 - wx.ravel()) * flat[index + stride] + wx.ravel() * flat[index + stride + 1]
    return ((1 - wy.ravel()) * top + wy.ravel() * bottom).reshape(n, height, width)


def torch_augmenter(config: AugmentConfig, seed: int):
    """A batch transform for training.loop.fit: (B, 1, H, W) float tensor → same shape, warped."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)

    def transform(images: "torch.Tensor") -> "torch.Tensor":
        n, _, height, width = images.shape
        sampled_ops = sample_stroke_ops(config, n, rng)
        if sampled_ops is not None:
            ops = torch.from_numpy(sampled_ops).to(images.device).view(n, 1, 1, 1)
            dilated, eroded = F.max_pool2d(images, 3, 1, 1), -F.max_pool2d(-images, 3, 1, 1)
            images = torch.where(ops == 1, dilated, torch.where(ops == -1, eroded, images))
        matrix = torch.from_numpy(sample_affine(config, n, rng)).to(images.device)  # (B, 2, 3) pixels
        # affine_grid works in [-1, 1] coordinates: a shift of t pixels is 2t / size.
        matrix[:, 0, 2] *= 2.0 / width
        matrix[:, 1, 2] *= 2.0 / height
        grid = F.affine_grid(matrix, list(images.shape), align_corners=False)  # (B, H, W, 2)
        displacement = sample_displacement(
            config=config, n=n, height=height, width=width, rng=rng
        )  # (B, 2, H, W) pixels
        if displacement is not None:
            scale = torch.tensor([2.0 / width, 2.0 / height], device=images.device)
            grid = grid + torch.from_numpy(displacement).to(images.device).permute(0, 2, 3, 1) * scale
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return transform if config.enabled else None
