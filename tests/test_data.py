import gzip
import io
import pickle
import struct

import numpy as np
import pytest

from shared.data.checks import check_images, check_labels
from shared.data.cifar import load_cifar10, read_batch
from shared.data.errors import CorruptDataError, DataError, DatasetNotFoundError
from shared.data.idx import load_idx_split, parse_idx, read_idx

IDX_TYPES = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", n) for n in arr.shape)
    return header + arr.astype(IDX_TYPES[code]).tobytes()


def test_idx_round_trip_plain_and_gzip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    (tmp_path / "b.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    assert np.array_equal(read_idx(tmp_path / "a"), arr)
    assert np.array_equal(read_idx(tmp_path / "b.gz"), arr)
    ints = np.array([-1, 2, 300], dtype=np.int32)
    out = parse_idx(idx_bytes(ints, 0x0C))
    assert out.dtype == np.dtype("int32") and out.tolist() == [-1, 2, 300]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown dtype code 0x07"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "file ends at byte 8"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00\x00", r"shape \(5,\) needs 5 data bytes, found 2"),
    ],
)
def test_idx_corruption_is_named(raw, message):
    with pytest.raises(CorruptDataError, match=message):
        parse_idx(raw, "f.idx")


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 2, 2), np.uint8)))[:-10])
    with pytest.raises(CorruptDataError, match="train-images-idx3-ubyte.gz: gzip stream"):
        read_idx(path)


def test_idx_split_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte.*apt-get install x"):
        load_idx_split(tmp_path, "apt-get install x")


def write_idx_split(folder, images=None, labels=None, test_images=None, image_code=0x08, label_code=0x08):
    """Four small MNIST-style files (20 train, 10 test 4x4 images); any of them replaceable."""
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (20, 4, 4)) if images is None else images, image_code),
        "train-labels-idx1-ubyte": (np.arange(20) % 10 if labels is None else labels, label_code),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (10, 4, 4)) if test_images is None else test_images, 0x08),
        "t10k-labels-idx1-ubyte": (np.arange(10), 0x08),
    }
    for name, (arr, code) in files.items():
        (folder / name).write_bytes(idx_bytes(np.asarray(arr), code))


def test_a_good_idx_split_loads(tmp_path):
    write_idx_split(tmp_path)
    x_tr, y_tr, x_te, y_te = load_idx_split(tmp_path)
    assert x_tr.shape == (20, 4, 4) and x_te.shape == (10, 4, 4) and y_tr.dtype == np.int64
    assert y_tr.tolist() == (np.arange(20) % 10).tolist() and y_te.tolist() == list(range(10))


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {"labels": np.arange(19) % 10},
            r"train-images-idx3-ubyte has 20 images but \S*train-labels-idx1-ubyte has 19",
        ),
        (
            {"labels": np.where(np.arange(20) == 17, 200, np.arange(20) % 10)},
            r"train-labels-idx1-ubyte: labels must be integers in 0..9, found 200 at index 17 \(1 out of range\)",
        ),
        ({"labels": np.full(20, -1), "label_code": 0x0C}, r"in 0..9, found -1 at index 0 \(20 out of range\)"),
        ({"labels": np.full(20, 1.5), "label_code": 0x0D}, r"labels must be integers in 0..9, found 1.5 \(float\)"),
        (
            {"images": np.where(np.arange(320).reshape(20, 4, 4) == 21, np.nan, 1.0), "image_code": 0x0D},
            r"train-images-idx3-ubyte: pixels must be finite numbers in 0..255, found nan at image 1, "
            r"position \(1, 1\)",
        ),
        ({"images": np.full((20, 4, 4), 300), "image_code": 0x0C}, r"in 0..255, found 300 at image 0, .*320 bad"),
        ({"images": np.zeros((20, 16))}, r"images must have shape \(n, rows, cols\), found \(20, 16\)"),
        ({"test_images": np.zeros((10, 5, 5))}, r"image sizes differ between files .*\(4, 4\).*\(5, 5\)"),
        ({"images": np.zeros((0, 4, 4)), "labels": np.zeros(0)}, r"n >= 1; found \(0, 4, 4\)"),
    ],
    ids=["count", "label-200", "label-negative", "label-float", "nan-pixel", "pixel-300", "flat", "sizes", "empty"],
)
def test_a_bad_idx_split_is_one_clear_error(tmp_path, bad, message):
    write_idx_split(tmp_path, **bad)
    with pytest.raises(CorruptDataError, match=message) as caught:
        load_idx_split(tmp_path)
    assert isinstance(caught.value, DataError) and "\n" not in str(caught.value)


def test_idx_labels_follow_the_class_count(tmp_path):
    write_idx_split(tmp_path, labels=np.arange(20) % 10)
    with pytest.raises(CorruptDataError, match=r"integers in 0..4, found 5 at index 5 \(10 out of range\)"):
        load_idx_split(tmp_path, n_classes=5)


def test_a_forged_idx_header_cannot_overflow_the_size_check():
    raw = b"\x00\x00\x08\x03" + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"\x00" * 8
    with pytest.raises(CorruptDataError, match=r"needs 79228162458924105385300197375 data bytes, found 8"):
        parse_idx(raw, "f.idx")


def write_batch(path, n: int, seed: int, labels=None) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist() if labels is None else labels
    path.write_bytes(pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"x"}, protocol=2))
    return data, labels


def test_cifar_batches_load_as_images(tmp_path):
    expected = [write_batch(tmp_path / f"data_batch_{i}", 4, i) for i in range(1, 6)]
    write_batch(tmp_path / "test_batch", 3, 9)
    x_tr, y_tr, x_te, y_te = load_cifar10(tmp_path)
    assert x_tr.shape == (20, 32, 32, 3) and y_tr.shape == (20,) and x_te.shape == (3, 32, 32, 3)
    data, labels = expected[0]
    # channel-first rows of 1024 red, then green, then blue values -> HWC
    assert np.array_equal(x_tr[0, :, :, 1].ravel(), data[0, 1024:2048]) and y_tr[:4].tolist() == labels


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(CorruptDataError, match="is not allowed in a CIFAR batch"):
        read_batch(path)


def test_cifar_reader_rejects_wrong_shapes_and_missing_files(tmp_path):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(CorruptDataError, match=r"shape \(n, 3072\)"):
        read_batch(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(CorruptDataError, match="not a CIFAR-10 python batch"):
        read_batch(path)
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        load_cifar10(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "labels, message",
    [
        ([0, 1, 200, 3], r"labels must be integers in 0..9, found 200 at index 2 \(1 out of range\)"),
        ([0, -1, 2, 3], r"found -1 at index 1"),
        ([0, 1, 2.0, 3], r"found 2.0 \(float\) at index 2"),
        ([b"cat", b"dog", b"cat", b"dog"], r"found b'cat' \(bytes\) at index 0"),
        ([0, None, 1, 2], r"found None \(NoneType\) at index 1"),
        ([0, [1, 2], 1, 2], r"found \[1, 2\] \(list\) at index 1"),
        ([True, False, True, False], r"found True \(bool\) at index 0"),
        ([0, 1, 2**70, 3], r"found 1180591620717411303424 at index 2"),
        ([[0, 1], [2, 3]], r"one per image; found an array of shape \(2, 2\)"),
        (np.array([0, 1, 10, 11], dtype=np.uint8), r"found 10 at index 2 \(2 out of range\)"),
        ([0, 1, 2], r"4 images but 3 labels"),
    ],
    ids=["200", "negative", "float", "bytes", "none", "ragged", "bool", "huge", "2d", "uint8", "count"],
)
def test_bad_cifar_labels_are_one_clear_error(tmp_path, labels, message):
    path = tmp_path / "data_batch_1"
    write_batch(path, 4, 0, labels)
    with pytest.raises(CorruptDataError, match=message) as caught:
        read_batch(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_a_truncated_or_damaged_cifar_batch_is_one_clear_error(tmp_path):
    good, path = tmp_path / "good", tmp_path / "data_batch_1"
    write_batch(good, 3, 0)
    raw = good.read_bytes()
    for cut in range(0, len(raw), 997):  # every prefix shape: header, inside the array, inside the labels
        path.write_bytes(raw[:cut])
        with pytest.raises(CorruptDataError, match="not a CIFAR-10 python batch, truncated or damaged"):
            read_batch(path)
    # a damaged codec name: not an unpickling error, but still just a bad file
    assert b"latin1" in raw
    path.write_bytes(raw.replace(b"latin1", b"latUn1", 1))
    with pytest.raises(CorruptDataError, match="truncated or damaged .LookupError"):
        read_batch(path)


def test_pixel_and_label_checks_pass_good_data_through():
    labels = check_labels([3, 0, 9], 10, "x")
    assert labels.dtype == np.int64 and labels.tolist() == [3, 0, 9]
    assert check_labels(np.array([1, 2], np.uint8), 3, "x").tolist() == [1, 2]
    images = np.linspace(0, 255, 24).reshape(2, 3, 4)
    assert check_images(images, "x") is images
    with pytest.raises(CorruptDataError, match="x: pixels must be finite numbers in 0..16, found 17.0"):
        check_images(np.full((1, 2), 17.0), "x", max_value=16)


def test_pickle_stream_of_numpy_array_is_allowed():
    buf = io.BytesIO(pickle.dumps(np.arange(3)))
    from shared.data.cifar import _RestrictedUnpickler

    assert _RestrictedUnpickler(buf).load().tolist() == [0, 1, 2]


def test_hf_image_splits_fail_offline_with_one_clear_error(monkeypatch):
    from shared.data.hf import load_hf_image_splits

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="needs data.hf_id"):
        load_hf_image_splits(None, "cifar10")
    with pytest.raises(DatasetNotFoundError, match="could not load 'no-such/dataset'.*get the files"):
        load_hf_image_splits("no-such/dataset", "cifar10", "get the files")


def test_hf_image_splits_check_labels_and_columns(monkeypatch):
    import datasets

    from shared.data.hf import load_hf_image_splits

    def fake(labels, image_key="image"):
        split = datasets.Dataset.from_dict({image_key: np.zeros((3, 2, 2), np.uint8).tolist(), "label": labels})
        return lambda hf_id: datasets.DatasetDict(train=split, test=split)

    monkeypatch.setattr(datasets, "load_dataset", fake([0, 1, 2]))
    x_tr, y_tr, _, _ = load_hf_image_splits("toy/ok", "toy", n_classes=10)
    assert x_tr.shape == (3, 2, 2) and y_tr.tolist() == [0, 1, 2]
    monkeypatch.setattr(datasets, "load_dataset", fake([0, 10, 2]))
    with pytest.raises(
        CorruptDataError, match=r"toy/bad\[train\]: labels must be integers in 0..9, found 10 at index 1"
    ):
        load_hf_image_splits("toy/bad", "toy", n_classes=10)
    monkeypatch.setattr(datasets, "load_dataset", fake([0, 1, 2], image_key="pixels"))
    with pytest.raises(CorruptDataError, match=r"needs an 'image' \(or 'img'\) and a 'label' column; it has"):
        load_hf_image_splits("toy/cols", "toy", n_classes=10)
