"""Training-time augmentation of processed pixel tensors (IRRA's recipe), pure torch."""

from __future__ import annotations

import math

import torch


class TrainingImageAugmentation:
    """Training-time augmentation of processed pixel tensors [3, H, W] (IRRA's recipe):
    horizontal flip (p=0.5), zero-pad by ``padding`` then random crop back to (H, W), random erasing
    (p=0.5, area 2%-40%, aspect 0.3-3.3, erased pixels set to 0 = the normalised mean).

    Pure torch (there is no CPU torchvision here); draws from ``generator`` when given.
    """

    def __init__(self, padding: int = 10, flip_probability: float = 0.5, erase_probability: float = 0.5,
                 erase_area: tuple[float, float] = (0.02, 0.4), erase_aspect: tuple[float, float] = (0.3, 3.3)):
        self.padding = padding
        self.flip_probability = flip_probability
        self.erase_probability = erase_probability
        self.erase_area = erase_area
        self.erase_aspect = erase_aspect

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if pixels.dim() != 3:
            raise ValueError(f"expected one image [3, H, W], got shape {list(pixels.shape)}")
        _, height, width = pixels.shape

        def uniform(low: float = 0.0, high: float = 1.0) -> float:
            return low + (high - low) * torch.rand((), generator=generator).item()

        if uniform() < self.flip_probability:
            pixels = pixels.flip(-1)
        if self.padding:
            padded = torch.nn.functional.pad(pixels, [self.padding] * 4)
            top = int(torch.randint(0, 2 * self.padding + 1, (), generator=generator))
            left = int(torch.randint(0, 2 * self.padding + 1, (), generator=generator))
            pixels = padded[:, top : top + height, left : left + width]
        else:
            pixels = pixels.clone()
        if uniform() < self.erase_probability:
            for _ in range(10):  # as torchvision's RandomErasing: up to 10 tries to fit a box
                area = uniform(*self.erase_area) * height * width
                aspect = math.exp(uniform(math.log(self.erase_aspect[0]), math.log(self.erase_aspect[1])))
                box_height, box_width = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
                if box_height < height and box_width < width:
                    top = int(torch.randint(0, height - box_height + 1, (), generator=generator))
                    left = int(torch.randint(0, width - box_width + 1, (), generator=generator))
                    pixels[:, top : top + box_height, left : left + box_width] = 0
                    break
        return pixels
