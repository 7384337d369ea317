"""asd.datasets: the bundled digit sets and the ImageFolder reader (numpy only, no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asd import datasets


@pytest.fixture(scope="module", params=["mnist5k", "digits"])
def bundled(request: pytest.FixtureRequest) -> datasets.Dataset:
    return datasets.load(request.param)


HW = {"mnist5k": 28, "digits": 8}


def test_shapes_dtypes_and_split_sizes(bundled: datasets.Dataset) -> None:
    n_train, n_test = datasets.SPLITS[bundled.name]
    hw = HW[bundled.name]
    assert bundled.x_train.shape == (n_train, 1, hw, hw)
    assert bundled.x_test.shape == (n_test, 1, hw, hw)
    assert bundled.y_train.shape == (n_train,) and bundled.y_test.shape == (n_test,)
    assert bundled.x_train.dtype == np.float32 and bundled.x_test.dtype == np.float32
    assert bundled.y_train.dtype == np.int64 and bundled.y_test.dtype == np.int64
    assert bundled.input_shape == (1, hw, hw)
    assert bundled.num_classes == 10


def test_labels_cover_all_classes(bundled: datasets.Dataset) -> None:
    for y in (bundled.y_train, bundled.y_test):
        assert y.min() == 0 and y.max() == 9
        assert set(np.unique(y)) == set(range(10))


def test_normalization_is_unit_range(bundled: datasets.Dataset) -> None:
    norm = bundled.normalization
    assert norm["mean"] == [0.0] and norm["std"] == [1.0]
    assert norm["pixel_max"] == {"mnist5k": 255.0, "digits": 16.0}[bundled.name]
    for x in (bundled.x_train, bundled.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    # values are exactly pixel / pixel_max for integer pixels
    pixels = bundled.x_test * np.float32(norm["pixel_max"])
    assert np.allclose(pixels, np.round(pixels), atol=1e-3)


def test_split_is_deterministic_and_disjoint(bundled: datasets.Dataset) -> None:
    again = datasets.load(bundled.name)
    assert np.array_equal(again.x_train, bundled.x_train)
    assert np.array_equal(again.y_test, bundled.y_test)
    assert again.x_test is not bundled.x_test  # fresh arrays, not a shared cache
    # no image of the test part appears in the train part (by exact content)
    train_keys = {r.tobytes() for r in bundled.x_train}
    overlap = sum(r.tobytes() in train_keys for r in bundled.x_test)
    assert overlap == 0


def test_split_is_a_permutation_of_the_source() -> None:
    from sklearn.datasets import load_digits

    d = datasets.load("digits")
    src = load_digits()
    x = np.concatenate([d.x_train, d.x_test]).reshape(-1, 64) * 16
    y = np.concatenate([d.y_train, d.y_test])
    order = np.random.RandomState(datasets.SPLIT_SEED).permutation(len(src.target))
    assert np.array_equal(y, src.target[order])
    assert np.allclose(x, src.data[order])


def test_bundled_rejects_options_and_unknown_names() -> None:
    with pytest.raises(TypeError):
        datasets.load("digits", size=8)
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.load("cifar10")
    with pytest.raises(ValueError):
        datasets.load("imagefolder:")


# --------------------------------------------------------------------------- imagefolder


def _tree(root: Path) -> dict[str, list[np.ndarray]]:
    """Two classes of small RGB PNGs (plus a non-image file that must be ignored)."""
    rng = np.random.default_rng(0)
    made: dict[str, list[np.ndarray]] = {}
    for cls, n, size in (("cat", 3, (12, 10)), ("ant", 2, (10, 10))):
        (root / cls).mkdir(parents=True)
        made[cls] = []
        for i in range(n):
            a = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / cls / f"img{i}.png")
            made[cls].append(a)
    (root / "cat" / "notes.txt").write_text("not an image")
    return made


def test_imagefolder_labels_order_and_values(tmp_path: Path) -> None:
    made = _tree(tmp_path)
    d = datasets.load(f"imagefolder:{tmp_path}", size=10, resize=0, mean=(0.5,), std=(0.25,))
    assert d.classes == ("ant", "cat")  # sorted folder names
    assert d.x_train.shape == (0, 3, 10, 10) and d.y_train.shape == (0,)
    assert d.x_test.shape == (5, 3, 10, 10) and d.x_test.dtype == np.float32
    assert d.y_test.tolist() == [0, 0, 1, 1, 1] and d.y_test.dtype == np.int64
    # ant/img0 is 10x10: no crop, just (p/255 - 0.5) / 0.25 in CHW order
    want = (made["ant"][0].transpose(2, 0, 1) / 255.0 - 0.5) / 0.25
    assert np.allclose(d.x_test[0], want, atol=1e-5)
    # cat/img0 is 12 rows x 10 cols: center crop keeps rows 1..10
    want = (made["cat"][0][1:11].transpose(2, 0, 1) / 255.0 - 0.5) / 0.25
    assert np.allclose(d.x_test[2], want, atol=1e-5)
    assert d.normalization["mean"] == [0.5] and d.normalization["size"] == [10, 10]


def test_imagefolder_resize_grayscale_and_defaults(tmp_path: Path) -> None:
    _tree(tmp_path)
    d = datasets.load(f"imagefolder:{tmp_path}", size=(4, 6), resize=8, channels=1)
    assert d.x_test.shape == (5, 1, 4, 6)
    assert d.normalization["mean"] == [0.0] and d.normalization["std"] == [1.0]
    assert 0.0 <= d.x_test.min() and d.x_test.max() <= 1.0
    rgb = datasets.load(f"imagefolder:{tmp_path}", size=8, limit=3)
    assert rgb.x_test.shape == (3, 3, 8, 8)
    assert rgb.normalization["mean"] == list(datasets.IMAGENET_MEAN)
    # a constant mid-grey image maps to (128/255 - mean) / std per channel
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((9, 9, 3), 128, np.uint8)).save(grey)
    x = datasets.load_image(grey, size=8)
    want = (128 / 255 - np.array(datasets.IMAGENET_MEAN)) / np.array(datasets.IMAGENET_STD)
    assert np.allclose(x[:, 4, 4], want, atol=1e-5)


def test_iter_imagefolder_matches_load(tmp_path: Path) -> None:
    _tree(tmp_path)
    kw = {"size": 6, "resize": 7}
    whole = datasets.load(f"imagefolder:{tmp_path}", **kw)
    batches = list(datasets.iter_imagefolder(tmp_path, batch_size=2, **kw))
    assert [len(y) for _, y in batches] == [2, 2, 1]
    assert np.array_equal(np.concatenate([x for x, _ in batches]), whole.x_test)
    assert np.array_equal(np.concatenate([y for _, y in batches]), whole.y_test)


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        datasets.load(f"imagefolder:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="no class"):
        datasets.load(f"imagefolder:{tmp_path}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        datasets.load(f"imagefolder:{tmp_path}")
    _tree(tmp_path / "t")
    with pytest.raises(ValueError, match="smaller than the crop"):
        datasets.load(f"imagefolder:{tmp_path / 't'}", size=11, resize=0)
    with pytest.raises(ValueError, match="channels"):
        datasets.load(f"imagefolder:{tmp_path / 't'}", channels=2)
    with pytest.raises(ValueError, match="mean/std"):
        datasets.load(f"imagefolder:{tmp_path / 't'}", mean=(0.1, 0.2))


# --------------------------------------------------------------------------- lfw_faces


@pytest.fixture(scope="module", params=[24, 48])
def faces(request: pytest.FixtureRequest) -> datasets.Dataset:
    return datasets.load(f"lfw_faces{request.param}")


def test_faces_shapes_labels_and_normalization(faces: datasets.Dataset) -> None:
    size = int(faces.name.removeprefix("lfw_faces"))
    assert datasets.SPLITS[faces.name] == (100, 100)
    assert faces.x_train.shape == faces.x_test.shape == (100, 3, size, size)
    assert faces.x_test.dtype == np.float32 and faces.y_test.dtype == np.int64
    assert faces.classes == datasets.FACE_CLASSES == ("nonface", "face")
    y = np.concatenate([faces.y_train, faces.y_test])
    assert np.bincount(y).tolist() == [100, 100]  # 100 faces, 100 non-faces
    assert 20 <= faces.y_test.sum() <= 80  # both classes in the test part
    # grey repeated on the three channels; MTCNN's (pixel - 127.5) / 128 for pixels in [0, 1]
    assert np.array_equal(faces.x_test[:, 0], faces.x_test[:, 2])
    norm = faces.normalization
    assert norm["pixel_max"] == 1.0 and norm["mean"] == [0.5] * 3
    assert norm["std"] == [128 / 255] * 3
    lo, hi = (0 - 0.5) * 255 / 128, (1 - 0.5) * 255 / 128
    assert lo - 1e-6 <= faces.x_test.min() < -0.5 and 0.5 < faces.x_test.max() <= hi + 1e-6


def test_faces_split_follows_the_source(faces: datasets.Dataset) -> None:
    from skimage.data import lfw_subset

    src = np.asarray(lfw_subset(), dtype=np.float64)
    order = np.random.RandomState(datasets.SPLIT_SEED).permutation(len(src))
    y = np.concatenate([faces.y_train, faces.y_test])
    assert np.array_equal(y, (order < 100).astype(np.int64))  # the first 100 are the faces
    # the mean grey level survives the resize (bilinear weights sum to one per pixel)
    x = np.concatenate([faces.x_train, faces.x_test])[:, 0] * (128 / 255) + 0.5
    assert np.allclose(x.mean(axis=(1, 2)), src[order].mean(axis=(1, 2)), atol=0.02)
    again = datasets.load(faces.name)
    assert np.array_equal(again.x_test, faces.x_test) and again.x_test is not faces.x_test


def test_faces_load_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The crops ship inside scikit-image's wheel: loading opens no connection."""
    import socket


    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    datasets._lfw_faces_raw.cache_clear()
    d = datasets.load("lfw_faces24")
    assert d.x_test.shape == (100, 3, 24, 24)


def test_resize_matrix_is_bilinear() -> None:
    assert np.array_equal(datasets._resize_matrix(5, 5), np.eye(5))
    m = datasets._resize_matrix(25, 48)
    assert m.shape == (48, 25) and np.allclose(m.sum(axis=1), 1.0) and (m >= 0).all()
    ramp = np.arange(25.0)
    inner = m @ ramp  # a linear ramp stays linear away from the clamped edges
    assert np.allclose(np.diff(inner[2:-2]), 25 / 48)
    assert np.allclose(datasets._resize_matrix(4, 2) @ np.arange(4.0), [0.5, 2.5])
