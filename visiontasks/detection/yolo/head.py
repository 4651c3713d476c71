"""YOLOv1's head: two fully connected layers from the S×S feature grid to the S×S×(5B+C) tensor.

Figure 3 of the paper: flatten the 7×7×1024 map, FC 4096 with leaky ReLU 0.1, dropout 0.5
(§2.2: "A dropout layer with rate = .5 after the first connected layer"), FC S·S·(5B+C) with a
linear activation. On a backbone whose map is not S×S (a shared backbone, or another input
size) the map is first average-pooled to S×S (``nn.AdaptiveAvgPool2d``; the identity on the
paper's 7×7).

``kind="conv"`` is NOT the paper's head: a 3×3 conv (``fc_dim`` channels, leaky ReLU 0.1,
dropout) and a linear 1×1 conv on the S×S grid produce the same (N, S, S, 5B+C) tensor with
weights shared by all cells (the fully convolutional prediction of YOLOv2 and SSD). With the
paper's FC head every cell has its own output weights and sees 1/S² of the training objects; on a
few hundred images trained from scratch it does not learn in a CPU budget (see
``configs/detection/yolov1_small.yaml``), the shared conv head does.

Output layout (``(N, S, S, 5B+C)``; row = y cell, column = x cell): per cell B blocks
``(x, y, sqrt_w, sqrt_h, confidence)`` then C class probabilities ``Pr(class_c | object)``:

- ``x, y``: the box centre as an offset inside its cell (0..1 across the cell);
- ``sqrt_w, sqrt_h``: the *square roots* of width and height relative to the image — the
  network predicts √w and √h directly (§2.2; darknet's ``sqrt=1``), so w = sqrt_w²;
- ``confidence``: Pr(object) × IoU(pred, truth);
- all raw linear outputs, as in the paper (no sigmoid or softmax).

darknet orders the same 1470 numbers differently (all S·S·C class scores, then S·S·B
confidences, then S·S·B·4 coordinates); the order is a convention of the last layer's rows and
does not change the model.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from visiontasks.detection.yolo.darknet import LEAKY_SLOPE

__all__ = ["YOLOHead"]


class YOLOHead(nn.Module):
    """Feature map (N, in_channels, h, w) → predictions (N, S, S, 5B+C).

    Args:
        in_channels: channels of the backbone's map.
        grid_size: S.
        num_boxes: B, boxes per cell.
        num_classes: C, object classes (no background).
        fc_dim: width of the first FC layer (4096 in the paper).
        dropout: dropout rate after the first FC layer (0.5 in the paper).
        fc_bottleneck: optional width of a linear FC layer before the first FC (darknet's Nov
            2015 yolo-tiny.cfg has 256; None = the paper's two FC layers).
        kind: "fc" (the paper) or "conv" (3×3 conv of ``fc_dim`` channels + 1×1 conv; not the
            paper, see the module docstring).
    """

    KINDS = ("fc", "conv")

    def __init__(self, in_channels: int, grid_size: int = 7, num_boxes: int = 2, num_classes: int = 20,
                 fc_dim: int = 4096, dropout: float = 0.5, fc_bottleneck: int | None = None,
                 kind: str = "fc") -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("grid_size", grid_size), ("num_boxes", num_boxes),
                            ("num_classes", num_classes), ("fc_dim", fc_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if fc_bottleneck is not None and (not isinstance(fc_bottleneck, int) or fc_bottleneck <= 0):
            raise ValueError(f"fc_bottleneck must be None or a positive int, got {fc_bottleneck!r}")
        if kind not in self.KINDS:
            raise ValueError(f"head kind must be one of {self.KINDS}, got {kind!r}")
        if kind == "conv" and fc_bottleneck is not None:
            raise ValueError("fc_bottleneck applies to the FC head only")
        self.grid_size, self.num_boxes, self.num_classes = grid_size, num_boxes, num_classes
        self.cell_dim = 5 * num_boxes + num_classes
        self.kind = kind
        self.pool = nn.AdaptiveAvgPool2d(grid_size)
        if kind == "conv":
            conv1 = nn.Conv2d(in_channels, fc_dim, 3, padding=1)
            conv2 = nn.Conv2d(fc_dim, self.cell_dim, 1)
            nn.init.kaiming_normal_(conv1.weight, a=LEAKY_SLOPE, nonlinearity="leaky_relu")
            nn.init.normal_(conv2.weight, std=0.01)
            nn.init.zeros_(conv1.bias)
            nn.init.zeros_(conv2.bias)
            self.conv = nn.Sequential(conv1, nn.LeakyReLU(LEAKY_SLOPE, inplace=True), nn.Dropout(float(dropout)), conv2)
            return
        flat = in_channels * grid_size * grid_size
        layers: list[nn.Module] = [nn.Flatten(1)]
        if fc_bottleneck is not None:
            layers.append(nn.Linear(flat, fc_bottleneck))  # linear, as in yolo-tiny.cfg
            flat = fc_bottleneck
        fc1 = nn.Linear(flat, fc_dim)
        fc2 = nn.Linear(fc_dim, grid_size * grid_size * self.cell_dim)
        nn.init.kaiming_normal_(fc1.weight, a=LEAKY_SLOPE, nonlinearity="leaky_relu")
        nn.init.normal_(fc2.weight, std=0.01)  # start near 0: small initial loss, no early blow-up
        for layer in layers[1:] + [fc1, fc2]:
            nn.init.zeros_(layer.bias)
        layers += [fc1, nn.LeakyReLU(LEAKY_SLOPE, inplace=True), nn.Dropout(float(dropout)), fc2]
        self.fc = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        s = self.grid_size
        x = self.pool(features)
        if self.kind == "conv":
            return self.conv(x).permute(0, 2, 3, 1)
        return self.fc(x).view(-1, s, s, self.cell_dim)
