"""Model summary: per-layer output shape, parameters and MACs, totals, and the paper's count.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (its per-module, hierarchical
counts; it counts 2 FLOPs per multiply-accumulate of convolutions and matrix products, so
MACs = FLOPs / 2, biases and activations not counted). Forward hooks only record output shapes.

Example::

    import visiontasks
    print(visiontasks.summary(visiontasks.get_model("fcn8s"), (3, 500, 500)))

The lecture notes' hand rules it agrees with: a conv's output side is ``(n − f + 2p)/s + 1``;
its weights ``kw·kh·kc·oc`` (a 3×3 conv from 128 to 64 channels: 73,728); its MACs
``kw·kh·kc·oc·ow·oh·b``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["PUBLISHED", "Published", "LayerRow", "ModelSummary", "summary", "published_for", "build_named_model",
           "fixed_proposals", "parse_input_size"]


@dataclass(frozen=True)
class Published:
    """A parameter count (and optionally a compute figure) printed by a paper.

    Args:
        params: the figure (exact where the paper's network definition pins it down).
        text: how the paper states it, with its source.
        when: builder arguments the figure assumes (a registry entry matches only with these).
        printed: False for a reference count the paper does not print (the line says so).
    """

    params: int
    text: str
    when: Mapping[str, Any] = field(default_factory=dict)
    printed: bool = True


#: Published figures by model name: registry names, or ``torchvision:NAME`` for torchvision's
#: classifiers. Figures the papers print, and one reference count marked ``printed=False``.
PUBLISHED: dict[str, Published] = {
    "torchvision:vgg16": Published(138_357_544, "138M (Simonyan & Zisserman 2015, Table 2, config D; "
                                   "138,357,544 is config D's exact count at 1000 classes)"),
    "torchvision:alexnet": Published(60_000_000, "60 million (Krizhevsky et al. 2012, abstract; the "
                                     "two-GPU network, torchvision's one-GPU variant differs)"),
    "fcn32s": Published(134_000_000, "134M (Long et al. 2015, Table 1, FCN-VGG16)", {"num_classes": 21}),
    "deconvnet": Published(252_000_000, "~252M (Noh et al. 2015)", {"num_classes": 21}),
    "yolov1": Published(271_703_550, "the paper prints no count; Figure 3's layers as drawn (24 conv + 2 FC, "
                        "7x7x30 output): 271,703,550 parameters, 40.6 GFLOP at 448x448",
                        {"num_classes": 21, "backbone": "darknet24", "head": "fc", "fc_dim": 4096,
                         "fc_bottleneck": None, "input_size": 448, "grid_size": 7, "num_boxes": 2}, printed=False),
}


def published_for(name: str, kwargs: Mapping[str, Any] | None = None) -> Published | None:
    """The published figure for a model built as ``get_model(name, **kwargs)``, if any.

    A registry entry matches only when the builder's effective arguments (its defaults updated
    with ``kwargs``) equal every argument the figure assumes (``Published.when``).
    """
    entry = PUBLISHED.get(name)
    if entry is None or not entry.when:
        return entry
    args: dict[str, Any] = {}
    if not name.startswith("torchvision:"):
        from visiontasks.registry import get_model_builder

        sig = inspect.signature(get_model_builder(name))
        args = {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
    args.update(kwargs or {})
    return entry if all(args.get(k) == v for k, v in entry.when.items()) else None


@dataclass
class LayerRow:
    """One module's line: its dotted name, type, output shape(s), parameters and MACs (subtree)."""

    name: str
    type: str
    output: str
    params: int
    macs: int
    depth: int


@dataclass
class ModelSummary:
    """The result of :func:`summary`; ``str()`` gives the printed table."""

    rows: list[LayerRow]
    input_size: tuple[int, ...]
    total_params: int
    trainable_params: int
    total_macs: int
    published: Published | None = None
    note: str = ""

    def __str__(self) -> str:
        width = max([len("  " * r.depth + r.name) for r in self.rows] + [5])
        tw = max([len(r.type) for r in self.rows] + [4])
        ow = max([len(r.output) for r in self.rows] + [12])
        lines = [f"{'layer':<{width}}  {'type':<{tw}}  {'output shape':<{ow}}  {'params':>13}  {'MACs':>17}"]
        lines.append("-" * len(lines[0]))
        for r in self.rows:
            lines.append(f"{'  ' * r.depth + r.name:<{width}}  {r.type:<{tw}}  {r.output:<{ow}}  "
                         f"{r.params:>13,}  {r.macs:>17,}")
        lines.append("-" * len(lines[0]))
        lines.append(f"input: {'x'.join(map(str, self.input_size))}" + (f" ({self.note})" if self.note else ""))
        lines.append(f"parameters: {self.total_params:,} ({self.trainable_params:,} trainable)")
        lines.append(f"MACs: {self.total_macs:,} ({self.total_macs / 1e9:.2f} GMAC, "
                     f"{2 * self.total_macs / 1e9:.2f} GFLOP)")
        if self.published is not None:
            diff = self.total_params - self.published.params
            kind = "paper" if self.published.printed else "reference"
            lines.append(f"{kind}: {self.published.params:,} — {self.published.text}; ours − {kind} = {diff:+,}")
        return "\n".join(lines)


def _shape_text(out: Any) -> str:
    if torch.is_tensor(out):
        return str(list(out.shape))
    if isinstance(out, Mapping):
        return ", ".join(f"{k}: {_shape_text(v)}" for k, v in out.items() if _shape_text(v))
    if isinstance(out, (list, tuple)):
        parts = [_shape_text(o) for o in out]
        parts = [p for p in parts if p]
        return "(" + ", ".join(parts[:4]) + (", …" if len(parts) > 4 else "") + ")" if parts else ""
    return ""


def fixed_proposals(height: int, width: int, count: int) -> torch.Tensor:
    """``count`` deterministic xyxy boxes (seeded centres and sides) inside a ``height`` × ``width`` image,
    the stand-in proposals for detectors fed external ones."""
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(count, 2, generator=g) * torch.tensor([width, height])
    sides = (0.1 + 0.5 * torch.rand(count, 2, generator=g)) * torch.tensor([width, height])
    boxes = torch.cat([centres - sides / 2, centres + sides / 2], dim=1)
    return boxes.clamp(min=torch.zeros(4), max=torch.tensor([width, height, width, height], dtype=torch.float))


def _run(model: nn.Module, x: torch.Tensor, num_proposals: int) -> str:
    """Calls ``model`` the way its task does (docs/CONTRACTS.md); returns a note on the call."""
    from visiontasks.detection.base import Detector

    if isinstance(model, Detector):
        if getattr(model, "needs_proposals", False):
            model([x], proposals=[fixed_proposals(x.shape[1], x.shape[2], num_proposals).to(x.device)])
            return f"detector fed {num_proposals} fixed proposals"
        model([x])
        if hasattr(model, "roi_head"):
            return "detector, one image, eval mode, resized by its transform; RoI-head MACs depend on the proposals kept"
        return "detector, one image, eval mode, resized or warped by its transform"
    model(x[None])
    return "batch 1, eval mode"


def summary(model: nn.Module, input_size: Sequence[int] = (3, 224, 224), depth: int | None = None,
            name: str | None = None, num_proposals: int = 300, device: str | torch.device = "cpu",
            published: Published | None = None) -> ModelSummary:
    """Runs one forward pass and tabulates every module's output shape, parameters and MACs.

    Args:
        model: any module; detectors (``visiontasks.detection.Detector``) get a list of one
            (C, H, W) image in [0, 1] (proposal-fed ones ``num_proposals`` fixed boxes), other
            models a (1, C, H, W) batch.
        input_size: (C, H, W) of the image.
        depth: list modules down to this nesting depth (their counts include their children);
            None lists the leaves (modules without children) and modules holding own parameters.
        name: a key of :data:`PUBLISHED` (registry name or ``torchvision:NAME``) to print the
            paper's count beside ours; ignored when ``published`` is given.
        num_proposals: boxes given to detectors fed external proposals.
        device: where to run.
        published: the figure to compare with (default: ``PUBLISHED.get(name)``).

    Returns:
        A :class:`ModelSummary` (print it for the table).
    """
    size = tuple(int(v) for v in input_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input_size must be (C, H, W) with positive sides, got {tuple(input_size)}")
    was_training = model.training
    model.eval()
    outputs: dict[str, str] = {}
    hooks = []
    for mod_name, module in model.named_modules():
        if mod_name:
            hooks.append(module.register_forward_hook(
                lambda _m, _i, out, key=mod_name: outputs.__setitem__(key, _shape_text(out))))
    x = torch.rand(size, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            note = _run(model, x, num_proposals)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    root = type(model).__name__
    counts = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    rows = []
    for mod_name, module in model.named_modules():
        if not mod_name:
            continue
        level = mod_name.count(".")
        leaf = not any(True for _ in module.children())
        own = any(True for _ in module.parameters(recurse=False))
        if (depth is None and not (leaf or own)) or (depth is not None and level >= depth):
            continue
        if mod_name not in outputs and not any(True for _ in module.parameters()):
            continue  # never called and holds nothing
        rows.append(LayerRow(mod_name, type(module).__name__, outputs.get(mod_name, "(not called)"),
                             sum(p.numel() for p in module.parameters()), counts.get(f"{root}.{mod_name}", 0) // 2,
                             0 if depth is None else level))
    if published is None and name is not None:
        published = PUBLISHED.get(name)
    return ModelSummary(rows, size, sum(p.numel() for p in model.parameters()),
                        sum(p.numel() for p in model.parameters() if p.requires_grad),
                        counts.get("Global", 0) // 2, published, note)


def parse_input_size(text: str) -> tuple[int, int, int]:
    """Parses ``"3x600x800"`` (C x H x W) into a tuple; ValueError quoting the text otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--input must be CxHxW with positive integers, e.g. 3x600x800, got {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def build_named_model(spec: str, overrides: Sequence[str] = ()) -> tuple[nn.Module, str, str, dict[str, Any]]:
    """Builds a model from a registry name, ``torchvision:NAME`` or a YAML config, random weights.

    Args:
        spec: registry name (e.g. "fcn8s"), ``torchvision:vgg16``, or a config path.
        overrides: ``key=value`` builder arguments (value parsed as YAML) for a registry name,
            or ``model.key=value`` config overrides for a config.

    Returns:
        (model, name, task, builder kwargs); name is the :data:`PUBLISHED` key to look up.
    """
    import yaml

    if spec.startswith("torchvision:"):
        import torchvision

        tv_name = spec.split(":", 1)[1]
        if tv_name not in torchvision.models.list_models():
            raise ValueError(f"unknown torchvision model {tv_name!r}")
        return torchvision.models.get_model(tv_name, weights=None), spec, "classification", {}
    if spec.endswith((".yaml", ".yml")):
        from visiontasks.config import load_config

        cfg = load_config(spec, list(overrides))
        kwargs = dict(cfg["model"])
        kwargs.pop("pretrained_backbone", None)
        name = kwargs.pop("name")
        task = cfg["task"]
    else:
        from visiontasks.registry import model_task

        name, task, kwargs = spec, model_task(spec), {}
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"model arguments must be key=value, got {item!r}")
            kwargs[key] = yaml.safe_load(value)
    from visiontasks.registry import get_model

    try:
        model = get_model(name, **kwargs)
    except TypeError as exc:  # an argument the builder does not take
        raise ValueError(f"model {name!r}: {exc}") from None
    return model, name, task, kwargs
