"""A torchvision CNN you trained on your own images (an ImageFolder) in, a quantized OpenVINO model out:
quantize it in one call, load the artifact back, and predict on image files with the preprocessing
the run recorded.

The images here are scikit-learn's digits written as PNG files (one folder per class), so the
example runs offline; point --images at your own ImageFolder instead.

    python examples/torchvision_imagefolder.py --out runs/example-vision
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, random_split

import slimkit
from slimkit.pipeline.predict import predict_file


def write_digits(folder: Path, per_class: int) -> Path:
    """scikit-learn's 8x8 digits as 32x32 RGB PNGs in ImageFolder layout."""
    digits = load_digits()
    counts: dict[int, int] = {}
    for image, label in zip(digits.images, digits.target, strict=True):
        if counts.get(int(label), 0) >= per_class:
            continue
        counts[int(label)] = counts.get(int(label), 0) + 1
        path = folder / str(label) / f"{counts[int(label)]}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.kron((image * 255 / 16).astype(np.uint8), np.ones((4, 4), dtype=np.uint8))
        Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(path)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", help="an ImageFolder (default: the digits written as PNGs)")
    p.add_argument("--out", default="runs/example-vision")
    p.add_argument("--per-class", type=int, default=60)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--quick", action="store_true", help="short timing runs (for tests)")
    args = p.parse_args()

    images = Path(args.images) if args.images else write_digits(Path(args.out) / "images", args.per_class)
    size = 32
    pre = slimkit.tasks.zoo.image_preprocess(size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    dataset = torchvision.datasets.ImageFolder(str(images), transform=slimkit.tasks.zoo.image_transform(pre))
    train, test = random_split(dataset, [0.8, 0.2], generator=torch.Generator().manual_seed(0))

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=len(dataset.classes))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(args.epochs):  # your own training
        for xb, yb in DataLoader(train, batch_size=32, shuffle=True):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    model.eval()

    # A zoo-style model carries its preprocessing, which every artifact's manifest then records.
    user = slimkit.tasks.zoo.UserModel(model, "resnet18", pre, labels=list(dataset.classes))
    result = slimkit.quantize(user, DataLoader(train, batch_size=32), eval_data=DataLoader(test, batch_size=32),
                              target="openvino", out=f"{args.out}/quantize", quick=args.quick)
    for entry in result.entries:
        print(f"{entry.id:24s} accuracy {entry.measurement.metric:6.2f}  {entry.measurement.latency.median:.3f} ms")

    predictor = slimkit.load(f"{args.out}/quantize", entry="openvino-int8-static")
    one_class = images / dataset.classes[3]
    rows = list(predict_file(predictor, one_class))  # raw image files, the recorded transform applied
    hits = sum(r["label"] == dataset.classes[3] for r in rows)
    print(f"{hits}/{len(rows)} images of class {dataset.classes[3]} predicted as such "
          f"({predictor.manifest['precision']} on {predictor.target})")


if __name__ == "__main__":
    main()
