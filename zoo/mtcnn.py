"""Export MTCNN's R-Net and O-Net (weights from the facenet-pytorch wheel) to ONNX, with a record.

    pip install torch==2.13.0 onnx onnxruntime scikit-image
    pip install --no-deps facenet-pytorch==2.6.0      # only for its bundled weight files
    python zoo/mtcnn.py                                # both nets into asd/data/models

These are the one kind of network in the zoo that nobody here trained: the face/non-face
stages of MTCNN (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks", 2016).  ``facenet-pytorch`` 2.6.0 (MIT licence, Timothy Esler) ships
their trained weights as torch state dicts (``facenet_pytorch/data/rnet.pt``, ``onet.pt``);
the package itself is never imported (it would pull torchvision): only its files are read.

The networks below are written here from the published layer shapes.  facenet-pytorch's
forward pass permutes the last feature map to N x W x H x C before flattening (the layout of
the TensorFlow port it was converted from); the compiler has no Transpose, so the export folds
that permutation into the columns of the first dense layer and flattens in plain N x C x H x W
order, which computes the same function.  Only the face/non-face head is exported (the box
regression and landmark heads are dropped), as logits: the softmax of the original is
monotonic, so top-1 is unchanged.

Checks before the record is written (a failing ONNX file is removed): the exported graph's
logits equal the torch forward pass in the source layout on the whole data set within 1e-4,
its softmax equals the face probabilities of facenet-pytorch's own ``RNet`` / ``ONet`` classes
within 1e-4, and the ONNX uses only ops the compiler imports.  The data set is
``asd.datasets``' ``lfw_faces24`` (R-Net) / ``lfw_faces48`` (O-Net).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # run as a script from anywhere

from train import MODEL_DIR, OPSET, accuracy, export, onnx_accuracy  # noqa: E402

from asd import datasets  # noqa: E402

PACKAGE, VERSION = "facenet-pytorch", "2.6.0"
LICENCE = "MIT (facenet-pytorch, Copyright (c) 2019 Timothy Esler)"
TOLERANCE = 1e-4


class Stage(nn.Module):
    """An MTCNN stage: (conv, PReLU[, max-pool]) blocks, one dense PReLU layer, the face head.

    ``convs``: (in, out, kernel, pool) per block, pool = (kernel, stride) of a ceil-mode
    max-pool or None.  Parameter names follow the state dicts in facenet-pytorch's wheel.
    """

    def __init__(self, convs: list[tuple[int, int, int, tuple[int, int] | None]],
                 flat: int, hidden: int, dense: str, head: str) -> None:
        super().__init__()
        self.blocks = len(convs)
        for i, (cin, cout, k, pool) in enumerate(convs, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(cin, cout, k))
            self.add_module(f"prelu{i}", nn.PReLU(cout))
            if pool is not None:
                self.add_module(f"pool{i}", nn.MaxPool2d(*pool, ceil_mode=True))
        self.add_module(dense, nn.Linear(flat, hidden))
        self.add_module(f"prelu{len(convs) + 1}", nn.PReLU(hidden))
        self.add_module(head, nn.Linear(hidden, 2))
        self.dense, self.head = dense, head
        self.source_layout = True  # flatten as N x W x H x C, as the source package does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.blocks + 1):
            x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
            if hasattr(self, f"pool{i}"):
                x = getattr(self, f"pool{i}")(x)
        if self.source_layout:
            x = x.permute(0, 3, 2, 1)
        x = getattr(self, f"prelu{self.blocks + 1}")(getattr(self, self.dense)(x.flatten(1)))
        out: torch.Tensor = getattr(self, self.head)(x)
        return out

    @torch.no_grad()
    def to_chw_layout(self, feature: tuple[int, int, int]) -> None:
        """Reorder the dense layer's input columns so that a plain N x C x H x W flatten
        gives the same result as the source layout; ``feature`` is the last map's C, H, W."""
        c, h, w = feature
        # column j of the source layout reads the element at flat NWHC index j; find, for
        # every CHW position, which source column it was
        src = torch.arange(c * h * w).reshape(w, h, c).permute(2, 1, 0).reshape(-1)
        layer = getattr(self, self.dense)
        layer.weight.copy_(layer.weight[:, src])
        self.source_layout = False


NETS = {
    # name: (dataset, constructor arguments, source state dict, last feature map C, H, W)
    "mtcnn_rnet": ("lfw_faces24",
                   ([(3, 28, 3, (3, 2)), (28, 48, 3, (3, 2)), (48, 64, 2, None)],
                    576, 128, "dense4", "dense5_1"), "rnet.pt", (64, 3, 3)),
    "mtcnn_onet": ("lfw_faces48",
                   ([(3, 32, 3, (3, 2)), (32, 64, 3, (3, 2)), (64, 64, 3, (2, 2)),
                     (64, 128, 2, None)], 1152, 256, "dense5", "dense6_1"), "onet.pt",
                   (128, 3, 3)),
}


def weights_dir() -> Path:
    """facenet-pytorch's bundled ``data/`` folder, found without importing the package."""
    found = importlib.metadata.version(PACKAGE)
    if found != VERSION:
        raise RuntimeError(f"{PACKAGE} {found} is installed; this export takes the weights "
                           f"from {VERSION}: pip install --no-deps {PACKAGE}=={VERSION}")
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{PACKAGE} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


class _Stub(types.ModuleType):
    """A stand-in module: every public name it is asked for is None."""

    def __getattr__(self, attr: str) -> None:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return None


STUBS = {
    "torchvision": ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
                    "torchvision.ops", "torchvision.ops.boxes"),
    "requests": ("requests", "requests.adapters"),
}
"""Modules facenet-pytorch imports at package level but its RNet / ONet classes never use."""


def package_probabilities(name: str, x: np.ndarray) -> np.ndarray:
    """Face/non-face probabilities from facenet-pytorch's own RNet / ONet classes.

    The package's detection and training helpers import torchvision (which does not install
    beside this torch) and a few other packages; only the network classes are needed, so
    empty stand-ins for the missing modules (:data:`STUBS`) are put in ``sys.modules``.
    """
    for top, mods in STUBS.items():
        if top not in sys.modules and importlib.util.find_spec(top) is None:
            for mod in mods:
                sys.modules.setdefault(mod, _Stub(mod))
    from facenet_pytorch.models import mtcnn

    cls = {"mtcnn_rnet": mtcnn.RNet, "mtcnn_onet": mtcnn.ONet}[name]
    net = cls(pretrained=True).eval()
    probs: torch.Tensor = net(torch.from_numpy(x))[-1]  # (box, [landmarks,] probabilities)
    return probs.numpy()


def load_stage(name: str) -> Stage:
    _, args, weights, _ = NETS[name]
    net = Stage(*args)  # type: ignore[arg-type]
    state = torch.load(weights_dir() / weights, map_location="cpu", weights_only=True)
    keep = {k: v for k, v in state.items() if k in net.state_dict()}  # the face head only
    net.load_state_dict(keep, strict=True)
    return net.eval()


@torch.no_grad()
def export_stage(name: str, out: Path) -> dict[str, object]:
    torch.set_num_threads(1)
    dataset, _, weights, feature = NETS[name]
    data = datasets.load(dataset)
    x_all = np.concatenate([data.x_train, data.x_test])
    net = load_stage(name)
    source = net(torch.from_numpy(x_all)).numpy()  # the source package's layout
    top1_source = accuracy(net, data.x_test, data.y_test)
    net.to_chw_layout(feature)
    ops = export(net, data.input_shape, out)

    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (onnx_out,) = sess.run(["logits"], {"input": x_all})
    diff = float(np.abs(onnx_out - source).max())
    if diff > TOLERANCE:
        out.unlink()
        raise RuntimeError(f"{name}: ONNX differs from the source forward pass by {diff:.3g}")
    e = np.exp(onnx_out - onnx_out.max(1, keepdims=True))
    prob_diff = float(np.abs(e / e.sum(1, keepdims=True) - package_probabilities(name, x_all))
                      .max())
    if prob_diff > TOLERANCE:
        out.unlink()
        raise RuntimeError(f"{name}: ONNX softmax differs from {PACKAGE}'s own network by "
                           f"{prob_diff:.3g}")
    top1_ort = onnx_accuracy(out, data.x_test, data.y_test)
    blob = out.read_bytes()
    record: dict[str, object] = {
        "name": name,
        "model": name,
        "dataset": dataset,
        "split": {"train": len(data.x_train), "test": len(data.x_test),
                  "split_seed": datasets.SPLIT_SEED},
        "source": {"package": PACKAGE, "version": VERSION, "file": f"facenet_pytorch/data/"
                   f"{weights}", "licence": LICENCE,
                   "paper": "Zhang et al. 2016, MTCNN (arXiv:1604.02878)",
                   "max_abs_logit_diff_onnx_vs_torch": diff,
                   "max_abs_prob_diff_onnx_vs_package": prob_diff},
        "trained_here": False,
        "input_name": "input",
        "output_name": "logits",
        "input_shape": ["N", *data.input_shape],
        "normalization": data.normalization,
        "normalization_formula": "x = (pixel / pixel_max - mean) / std",
        "classes": list(data.classes),
        "test_top1_torch": round(top1_source, 2),
        "test_top1_onnxruntime": round(top1_ort, 2),
        "parameters": sum(p.numel() for p in net.parameters()),
        "ops": ops,
        "opset": OPSET,
        "onnx_bytes": len(blob),
        "onnx_sha256": hashlib.sha256(blob).hexdigest(),
        "torch_version": torch.__version__,
        "command": f"python zoo/mtcnn.py --only {name}",
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{name}: {len(blob)} bytes, max |onnx - torch| {diff:.2e} (logits), "
          f"{prob_diff:.2e} (probabilities vs {PACKAGE}), test top-1 torch "
          f"{top1_source:.2f}%, onnxruntime {top1_ort:.2f}%", flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=sorted(NETS), default=sorted(NETS))
    ap.add_argument("-d", "--directory", type=Path, default=MODEL_DIR)
    args = ap.parse_args(argv)
    for name in args.only:
        export_stage(name, args.directory / f"{name}.onnx")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
