"""Built-in tasks on scikit-learn's bundled handwritten digits (real data, fully offline).

``digits-cnn`` is a small CNN at the native 8x8; ``digits-resnet18`` is torchvision's
ResNet-18 (10 classes) on the same images upsampled to 3x64x64; ``digits-mobilenet`` is
torchvision's MobileNetV2 (10 classes, depthwise-separable) on them upsampled to 3x32x32,
trained with SGD as MobileNets usually are. The split is fixed (80/20, stratified, seed 0).
Baselines train once and are cached by task and seed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from slimkit._optional import require
from slimkit.core.cache import load_weights, save_weights
from slimkit.core.data import Batches, Inputs
from slimkit.core.task import Metric, Task, accuracy
from slimkit.train.engine import TrainConfig, evaluate_torch, fit

# Bump when the model, data pipeline or recipe changes so old caches are not reused.
_CACHE_VERSION = 1


def load_digits_split(size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images in [0, 1] shaped (N, 1, 8, 8) or (N, 3, size, size), with labels; train then test."""
    datasets = require("sklearn.datasets", "the digits tasks")
    model_selection = require("sklearn.model_selection", "the digits tasks")
    digits = datasets.load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    idx_train, idx_test = model_selection.train_test_split(
        list(range(len(y))), test_size=0.2, random_state=0, stratify=digits.target
    )
    if size is not None:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = ((x - 0.3) / 0.4).expand(-1, 3, -1, -1).contiguous()
    else:
        x = (x - 0.3) / 0.4
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


class DigitsCNN(nn.Module):
    """A small CNN for 1x8x8 digits: three conv-BN-ReLU blocks and a linear head."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width * 2, 3, padding=1, bias=False),
            nn.BatchNorm2d(width * 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width * 2, width * 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(width * 4),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def _shift(max_px: int) -> Callable[[Inputs, torch.Generator], Inputs]:
    """Random translation by up to ``max_px`` pixels (zero padding): cheap, label-preserving."""

    def augment(inputs: Inputs, gen: torch.Generator) -> Inputs:
        x = inputs["x"]
        dx, dy = (torch.randint(-max_px, max_px + 1, (2,), generator=gen)).tolist()
        padded = F.pad(x, (max_px, max_px, max_px, max_px), value=float(x.min()))
        h, w = x.shape[-2:]
        return {"x": padded[..., max_px + dy : max_px + dy + h, max_px + dx : max_px + dx + w]}

    return augment


def _cached_baseline(
    key: str, make: Callable[[], nn.Module], train: Batches, test: Batches, cfg: TrainConfig,
    augment: Callable[[Inputs, torch.Generator], Inputs] | None, metric: Metric,
) -> Callable[[], nn.Module]:
    def factory() -> nn.Module:
        torch.manual_seed(cfg.seed)
        model = make()
        if load_weights(model, key) is not None:
            return model.eval()
        from slimkit.ui import console

        console.log(f"training baseline '{key}' once ({cfg.epochs} epochs; cached afterwards)")
        fit(model, train, F.cross_entropy, cfg, augment=augment,
            on_epoch=lambda e, row: console.log(f"  epoch {e}/{cfg.epochs} loss {row['loss']:.4f}"))
        score = evaluate_torch(model, test, metric)
        console.log(f"baseline '{key}' test {metric.name}: {score:.2f}")
        save_weights(model, key, {"task": key, "metric": metric.name, "value": score, "epochs": cfg.epochs})
        return model.eval()

    return factory


def _digits_task(name: str, size: int | None, make: Callable[[], nn.Module], cfg: TrainConfig,
                 seed: int, description: str, shift: int) -> Task:
    x_train, y_train, x_test, y_test = load_digits_split(size)
    train = Batches({"x": x_train}, y_train, batch_size=64, shuffle=True, seed=seed)
    test = Batches({"x": x_test}, y_test, batch_size=64)
    calib = Batches({"x": x_train[:256]}, y_train[:256], batch_size=32)
    metric = Metric("accuracy", accuracy)
    key = f"{name}-seed{seed}-v{_CACHE_VERSION}"
    return Task(
        name=name,
        model=_cached_baseline(key, make, train, test, cfg, _shift(shift), metric),
        example_inputs={"x": x_test[:1].clone()},
        train_data=train,
        calibration_data=calib,
        eval_data=test,
        metric=metric,
        loss=F.cross_entropy,
        description=description,
        throughput_batch=32,
        # Half a point of accuracy: the budget every recorded digits result was measured under.
        tolerance=0.5,
        fresh_model=make,
    )


def digits_cnn(seed: int = 0) -> Task:
    """Small CNN on 8x8 digits (trains in seconds)."""
    return _digits_task(
        "digits-cnn", None, DigitsCNN,
        TrainConfig(epochs=15, lr=3e-3, weight_decay=1e-4, seed=seed), seed,
        "small CNN on scikit-learn digits, 1x8x8 input, 10 classes", shift=1,
    )


def digits_resnet18(seed: int = 0) -> Task:
    """torchvision ResNet-18 (10 classes) on digits upsampled to 3x64x64."""
    models = require("torchvision.models", "the digits-resnet18 task")
    return _digits_task(
        "digits-resnet18", 64, lambda: models.resnet18(num_classes=10),
        TrainConfig(epochs=12, lr=2e-3, weight_decay=5e-4, warmup_epochs=1, seed=seed), seed,
        "torchvision ResNet-18 on scikit-learn digits upsampled to 3x64x64, 10 classes", shift=6,
    )


def digits_mobilenet(seed: int = 0) -> Task:
    """torchvision MobileNetV2 (10 classes) on digits upsampled to 3x32x32, trained with SGD.

    Its first depthwise conv shows the classic per-tensor int8 failure of MobileNets: a stem
    channel the training switched off leaves a depthwise channel with a near-zero BatchNorm
    variance, so after folding its weights are hundreds of times larger than the others.
    """
    models = require("torchvision.models", "the digits-mobilenet task")
    return _digits_task(
        "digits-mobilenet", 32, lambda: models.mobilenet_v2(num_classes=10),
        TrainConfig(epochs=10, lr=0.05, optimizer="sgd", momentum=0.9, weight_decay=4e-5, warmup_epochs=1,
                    seed=seed), seed,
        "torchvision MobileNetV2 on scikit-learn digits upsampled to 3x32x32, 10 classes", shift=1,
    )
