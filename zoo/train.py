"""Train a zoo network on a bundled dataset and export it to ONNX, with a JSON record.

    python zoo/train.py --model lenet --dataset mnist5k --epochs 12 --seed 0 \\
        -o asd/data/models/mnist_lenet.onnx
    python zoo/train.py --all            # every shipped model (see SHIPPED)

Deterministic for a given seed on one machine (seeded init and shuffling, one thread,
deterministic algorithms).  Data come from ``asd.datasets`` with its normalization, so the
models expect exactly what ``asd.datasets.load`` returns.  The ONNX file (opset 13, input
``input`` of shape ``N x 1 x H x W`` with symbolic batch ``N``, output ``logits``) is evaluated
with onnxruntime on the test split; that accuracy must agree with torch's, and both go into
``NAME.json`` next to the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # run as a script from anywhere

from nets import build  # noqa: E402

from asd import datasets  # noqa: E402

OPSET = 13
MODEL_DIR = ROOT / "asd" / "data" / "models"
ALLOWED_OPS = frozenset({
    "Conv", "Gemm", "MatMul", "Relu", "LeakyRelu", "PRelu", "Clip", "MaxPool", "AveragePool",
    "GlobalAveragePool", "Add", "Concat", "Flatten", "Reshape", "BatchNormalization",
    "Dropout", "Softmax",
})


@dataclass(frozen=True)
class Recipe:
    model: str
    dataset: str
    epochs: int
    lr: float = 1e-3
    batch_size: int = 64
    shift: int = 0        # random translation augmentation, in pixels (0: none)
    seed: int = 0


SHIPPED: dict[str, Recipe] = {
    "mnist_lenet": Recipe("lenet", "mnist5k", epochs=20, lr=2e-3, shift=2),
    "digits_cnn": Recipe("digits_cnn", "digits", epochs=30, shift=1),
    "mnist_alexnet": Recipe("alexnet", "mnist5k", epochs=15, shift=2),
    "mnist_vgg": Recipe("vgg", "mnist5k", epochs=20, shift=2),
    "mnist_resnet18": Recipe("resnet18", "mnist5k", epochs=20, lr=3e-3, shift=2),
    "mnist_squeezenet": Recipe("squeezenet", "mnist5k", epochs=20, lr=3e-3, shift=2),
}
"""The models shipped in asd/data/models, by file stem."""


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def random_shift(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by an independent random (dy, dx) in [-k, k], zero fill."""
    if k == 0:
        return x
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (k, k, k, k))
    dy = torch.randint(0, 2 * k + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * k + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]   # n,1,h,1
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]   # n,1,1,w
    idx = torch.arange(n)[:, None, None, None]
    return padded[idx, torch.zeros_like(idx), rows, cols]


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        logits = model(torch.from_numpy(x[i : i + batch]))
        correct += int((logits.argmax(1).numpy() == y[i : i + batch]).sum())
    return 100.0 * correct / len(x)


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    (logits,) = sess.run(["logits"], {"input": x})
    return 100.0 * float((np.asarray(logits).argmax(1) == y).mean())


def export(model: nn.Module, shape: tuple[int, ...], path: Path) -> list[str]:
    """Export to ONNX; returns the sorted op types, all of which must be ALLOWED_OPS."""
    import onnx

    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (torch.zeros(1, *shape),), str(path), dynamo=False, opset_version=OPSET,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    ops = sorted({n.op_type for n in proto.graph.node})
    bad = set(ops) - ALLOWED_OPS
    if bad:
        raise RuntimeError(f"{path.name}: ops outside the compiler's list: {sorted(bad)}")
    return ops


def train(recipe: Recipe, out: Path) -> dict[str, object]:
    seed_everything(recipe.seed)
    data = datasets.load(recipe.dataset)
    model = build(recipe.model)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{out.stem}: {recipe.model} on {recipe.dataset}, {n_params} parameters, "
          f"train {len(data.x_train)} / test {len(data.x_test)}", flush=True)

    x_tr, y_tr = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    gen = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    steps = recipe.epochs * -(-len(x_tr) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()

    t0 = time.perf_counter()
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        total = 0.0
        for i in range(0, len(order), recipe.batch_size):
            b = order[i : i + recipe.batch_size]
            xb = random_shift(x_tr[b], recipe.shift, gen)
            loss = loss_fn(model(xb), y_tr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        acc = accuracy(model, data.x_test, data.y_test)
        print(f"  epoch {epoch:3d}  loss {total / len(x_tr):.4f}  test top-1 {acc:6.2f}%",
              flush=True)
    train_time = time.perf_counter() - t0

    top1_torch = accuracy(model, data.x_test, data.y_test)
    ops = export(model, data.input_shape, out)
    top1_ort = onnx_accuracy(out, data.x_test, data.y_test)
    n_test = len(data.x_test)
    if abs(top1_torch - top1_ort) > 100.0 / n_test + 1e-9:  # at most one image may flip
        raise RuntimeError(f"torch {top1_torch:.2f}% and onnxruntime {top1_ort:.2f}% disagree")
    blob = out.read_bytes()
    record: dict[str, object] = {
        "name": out.stem,
        "model": recipe.model,
        "dataset": recipe.dataset,
        "split": {"train": len(data.x_train), "test": n_test,
                  "split_seed": datasets.SPLIT_SEED},
        "seed": recipe.seed,
        "epochs": recipe.epochs,
        "batch_size": recipe.batch_size,
        "optimizer": f"Adam, one-cycle lr max {recipe.lr}",
        "augmentation": f"random shift +-{recipe.shift} px" if recipe.shift else "none",
        "input_name": "input",
        "output_name": "logits",
        "input_shape": ["N", *data.input_shape],
        "normalization": data.normalization,
        "normalization_formula": "x = (pixel / pixel_max - mean) / std",
        "classes": list(data.classes),
        "test_top1_torch": round(top1_torch, 2),
        "test_top1_onnxruntime": round(top1_ort, 2),
        "parameters": n_params,
        "ops": ops,
        "opset": OPSET,
        "onnx_bytes": len(blob),
        "onnx_sha256": hashlib.sha256(blob).hexdigest(),
        "train_time_s": round(train_time, 1),
        "torch_version": torch.__version__,
        "command": (f"python zoo/train.py --model {recipe.model} --dataset {recipe.dataset} "
                    f"--epochs {recipe.epochs} --seed {recipe.seed} --lr {recipe.lr} "
                    f"--batch-size {recipe.batch_size} --shift {recipe.shift} "
                    f"-o asd/data/models/{out.name}"),
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"  -> {out} ({len(blob)} bytes, {train_time:.1f} s): torch {top1_torch:.2f}%, "
          f"onnxruntime {top1_ort:.2f}%", flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--all", action="store_true",
                    help=f"train every shipped model into {MODEL_DIR.relative_to(ROOT)}")
    ap.add_argument("--only", nargs="+", choices=sorted(SHIPPED),
                    help="with --all: only these shipped models")
    ap.add_argument("--model", help="network name from zoo/nets.py")
    ap.add_argument("--dataset", choices=["mnist5k", "digits"])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shift", type=int, default=0, help="random-shift augmentation, pixels")
    ap.add_argument("-o", "--output", type=Path, help="ONNX path; the JSON goes next to it")
    args = ap.parse_args(argv)

    if args.all:
        for stem, recipe in SHIPPED.items():
            if args.only is None or stem in args.only:
                train(recipe, MODEL_DIR / f"{stem}.onnx")
        return 0
    if not (args.model and args.dataset and args.output):
        ap.error("--model, --dataset and -o are required (or use --all)")
    recipe = Recipe(args.model, args.dataset, args.epochs, args.lr, args.batch_size,
                    args.shift, args.seed)
    train(recipe, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
