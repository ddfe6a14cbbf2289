import gzip
import io
import pickle
import struct

import numpy as np
import pytest

from shared.data.cifar import load_cifar10, read_batch
from shared.data.errors import CorruptDataError, DatasetNotFoundError
from shared.data.idx import load_idx_split, parse_idx, read_idx


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", n) for n in arr.shape)
    return header + arr.astype(">u1" if code == 0x08 else ">i4").tobytes()


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


def test_idx_split_checks_label_count(tmp_path):
    imgs, labels = np.zeros((3, 2, 2), np.uint8), np.zeros(2, np.uint8)
    for split in ("train", "t10k"):
        (tmp_path / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(imgs))
        (tmp_path / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(CorruptDataError, match="train has 3 images but 2 labels"):
        load_idx_split(tmp_path)


def write_batch(path, n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
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
