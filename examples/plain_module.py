"""Your own nn.Module and a DataLoader in, a deployable model out: train a small MLP on scikit-learn's
digits, then prune it and quantize it with one call each, load the result back and predict.

    python examples/plain_module.py --out runs/example-plain
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import slimkit


class DigitsMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/example-plain")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="short timing runs (for tests)")
    args = p.parse_args()

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    train = DataLoader(TensorDataset(x[:1400], y[:1400]), batch_size=64, shuffle=True)
    test = DataLoader(TensorDataset(x[1400:], y[1400:]), batch_size=64)

    torch.manual_seed(0)
    model = DigitsMLP()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(args.epochs):  # your own training loop: slimkit only needs the trained model
        for xb, yb in train:
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    model.eval()

    # (x, y) batches carry labels, so the metric is accuracy; positional inputs are named after forward().
    pruned = slimkit.prune(model, train, eval_data=test, ratio=0.5, recover_epochs=3, targets=["torch", "onnxruntime"],
                           out=f"{args.out}/prune", quick=args.quick)
    print(f"pruned: {pruned.entry('pruned-torch').measurement.metric:.2f}% vs "
          f"{pruned.baseline.measurement.metric:.2f}% unpruned")
    quantized = slimkit.quantize(model, train, eval_data=test, target="onnxruntime", out=f"{args.out}/quantize",
                                 quick=args.quick)
    best = quantized.best_entry or quantized.entry("onnxruntime-int8-static")
    print(f"quantized: best {best.id}, {best.measurement.metric:.2f}%, {best.measurement.latency.median:.3f} ms")

    predictor = slimkit.load(f"{args.out}/quantize", entry="onnxruntime-int8-static")  # from the folder alone
    logits = predictor(x[1400:1408].numpy())  # NumPy in, NumPy out; any batch size
    print("predicted:", logits.argmax(1).tolist(), "true:", y[1400:1408].tolist())


if __name__ == "__main__":
    main()
