"""nsnn.data: file formats, verified downloads, augmentation, validation split and the batch loader.

All data is generated in ``tmp_path`` (or is the embedded MNIST set); downloads use ``file://`` URLs.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import shutil
import socket
import socketserver
import tarfile
import threading
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import nsnn.data as nd
from nsnn.data import (
    Augment,
    DatasetError,
    ImageSet,
    TensorLoader,
    cutout,
    random_crop,
    random_hflip,
    random_roll,
    split_indices,
)
from nsnn.data.mnist import embedded_mnist_dir

# ----------------------------------------------------------------------------------------------- helpers


def write_idx(path: Path, array: np.ndarray) -> Path:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def fake_mnist(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, arr in arrays.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arr)
    return arrays


def dump(path: Path, obj: object, protocol: int = 4) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def fake_cifar(root: Path, name: str = "cifar10", per_file: int = 4) -> Path:
    layout = nd.CIFAR_LAYOUTS[name]
    folder = root / layout.folder
    folder.mkdir(parents=True)
    for k, files in enumerate(layout.splits.values()):
        for j, f in enumerate(files):
            data = (np.arange(per_file * 3072) + 7 * j + 3 * k).astype(np.uint8).reshape(per_file, 3072)
            labels = [(i + j) % layout.num_classes for i in range(per_file)]
            dump(folder / f, {b"data": data, layout.label_key: labels, b"batch_label": b"x"})
    names = [f"class{i}".encode() for i in range(layout.num_classes)]
    dump(folder / layout.meta, {layout.names_key: names})
    return folder


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def fake_dvs(root: Path, sizes: dict[str, int], shape=(3, 2, 8, 8)) -> Path:
    g = torch.Generator().manual_seed(0)
    for split, n in sizes.items():
        (root / split).mkdir(parents=True)
        for i in range(n):
            label = torch.Tensor([i % 10]) if i % 2 else i % 10  # the reference saves Tensor([c]) (float)
            torch.save([torch.rand(shape, generator=g), label], root / split / f"{i}.pt")
    return root


# ------------------------------------------------------------------------------------------ MNIST / idx


def test_idx_round_trip_plain_and_gz(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (3, 5, 7), dtype=np.uint8)
    ints = (np.arange(6) - 2).astype(">i4").reshape(2, 3)
    np.testing.assert_array_equal(nd.read_idx(write_idx(tmp_path / "a-idx3-ubyte", arr)), arr)
    np.testing.assert_array_equal(nd.read_idx(write_idx(tmp_path / "a-idx3-ubyte.gz", arr)), arr)
    np.testing.assert_array_equal(nd.read_idx(write_idx(tmp_path / "b-idx2-int", ints)), ints)


def test_mnist_folder_layouts_and_corruption(tmp_path):
    arrays = fake_mnist(tmp_path / "flat", gz=False)
    train = nd.load_mnist_folder(tmp_path / "flat", "train")
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    np.testing.assert_array_equal(train.images.numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(train.labels.numpy(), arrays["train-labels-idx1-ubyte"])
    fake_mnist(tmp_path / "tv" / "MNIST" / "raw")
    assert len(nd.load_mnist_folder(tmp_path / "tv", "test")) == 5

    path = tmp_path / "flat" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])  # truncated payload
    with pytest.raises(DatasetError, match="truncated") as e:
        nd.load_mnist_folder(tmp_path / "flat", "train")
    assert "--download" in str(e.value) and str(tmp_path / "flat") in str(e.value)
    path.write_bytes(b"\x01\x02garbage")
    with pytest.raises(DatasetError, match="bad magic"):
        nd.read_idx(path)
    bad_gz = tmp_path / "x-idx1-ubyte.gz"
    bad_gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(4) + bytes(100))[:-12] + b"\xff" * 12)
    with pytest.raises(DatasetError):
        nd.read_idx(bad_gz)


def test_mnist_images_and_labels_come_from_one_copy(tmp_path):
    # A set of .gz files with a stray uncompressed images file of another copy beside it (same count):
    # the images used to come from the stray file and the labels from the .gz set.
    root = tmp_path / "m"
    arrays = fake_mnist(root)
    other = np.random.default_rng(7).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    write_idx(root / "train-images-idx3-ubyte", other)
    train = nd.load_mnist_folder(root, "train")
    np.testing.assert_array_equal(train.images.numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(train.labels.numpy(), arrays["train-labels-idx1-ubyte"])
    # ... or in another of the accepted folders: the first folder holding both files is read alone.
    nested = tmp_path / "n"
    arrays = fake_mnist(nested)
    (nested / "MNIST" / "raw").mkdir(parents=True)
    write_idx(nested / "MNIST" / "raw" / "train-images-idx3-ubyte", other)
    train = nd.load_mnist_folder(nested, "train")
    np.testing.assert_array_equal(train.images.numpy(), arrays["train-images-idx3-ubyte"])
    # images compressed and labels not, in one folder: still one copy, read.
    mixed = tmp_path / "x"
    arrays = fake_mnist(mixed)
    lbl = mixed / "t10k-labels-idx1-ubyte.gz"
    lbl.with_suffix("").write_bytes(gzip.decompress(lbl.read_bytes()))
    lbl.unlink()
    test = nd.load_mnist_folder(mixed, "test")
    np.testing.assert_array_equal(test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_mnist_download_folder_comes_before_other_files_in_root(tmp_path):
    # A corrupt hand-copied file in the root and a verified download in root/MNIST/raw (where --download
    # puts it): the download is read, from any later call without --download too, and named as the source.
    root = tmp_path / "data"
    arrays = fake_mnist(root / "MNIST" / "raw")
    fake_mnist(root)
    bad = root / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:20])
    train = nd.load_mnist_folder(root, "train")
    np.testing.assert_array_equal(train.images.numpy(), arrays["train-images-idx3-ubyte"])
    assert nd.mnist_folder(root, "train") == nd.mnist_folder(root, "test") == root / "MNIST" / "raw"
    assert nd.get_dataset("mnist", root).source == str(root / "MNIST" / "raw")
    assert nd.mnist_folder(tmp_path / "none") == tmp_path / "none"


def test_embedded_mnist_reads_the_md5_checked_files(tmp_path, monkeypatch):
    # An extra uncompressed label file beside the shipped .gz files is never read.
    folder = tmp_path / "embedded"
    shutil.copytree(embedded_mnist_dir(), folder)
    labels = nd.read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    write_idx(folder / "t10k-labels-idx1-ubyte", ((labels.astype(np.int64) + 1) % 10).astype(np.uint8))
    monkeypatch.setattr("nsnn.data.mnist.embedded_mnist_dir", lambda: folder)
    np.testing.assert_array_equal(nd.load_embedded_mnist().labels.numpy(), labels)


def test_mnist_folder_refuses_labels_out_of_range_and_wrong_image_size(tmp_path):
    arrays = fake_mnist(tmp_path / "m", gz=False)
    labels = arrays["train-labels-idx1-ubyte"].copy()
    labels[0] = 200
    write_idx(tmp_path / "m" / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DatasetError, match=r"labels span 0\.\.200") as e:
        nd.load_mnist_folder(tmp_path / "m", "train")
    assert str(tmp_path / "m") in str(e.value)
    fake_mnist(tmp_path / "s", gz=False)
    write_idx(tmp_path / "s" / "t10k-images-idx3-ubyte", np.zeros((5, 32, 32), np.uint8))
    with pytest.raises(DatasetError, match="not uint8 28 x 28"):
        nd.load_mnist_folder(tmp_path / "s", "test")


def test_mnist_folder_refuses_float_labels_and_absurd_idx_headers(tmp_path):
    arrays = fake_mnist(tmp_path / "f", gz=False)
    labels = np.full(len(arrays["train-labels-idx1-ubyte"]), 3.7, ">f4")
    labels[0] = np.nan  # NaN would pass a range check
    write_idx(tmp_path / "f" / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DatasetError, match=r"labels are >f4, not integers"):
        nd.load_mnist_folder(tmp_path / "f", "train")
    # four dims of 65536 claimed with no payload: their product overflows int64 to 0 in numpy
    huge = tmp_path / "huge-idx4-ubyte"
    huge.write_bytes(bytes([0, 0, 8, 4]) + (65536).to_bytes(4, "big") * 4)
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        nd.read_idx(huge)


def test_missing_mnist_error_names_path_layout_and_download(tmp_path):
    with pytest.raises(DatasetError) as e:
        nd.get_dataset("mnist", data_dir=tmp_path / "nowhere")
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg and "train-images-idx3-ubyte" in msg and "--download" in msg


def test_embedded_mnist_bundle():
    b = nd.get_dataset("mnist")
    assert (len(b.train), len(b.test)) == (8000, 2000)
    assert (b.num_classes, b.in_channels, b.image_size) == (10, 1, 28)
    assert b.mean == (0.1307,) and b.std == (0.3081,) and "embedded" in b.describe()
    again, _ = nd.embedded_mnist_split()
    assert torch.equal(again.labels, b.train.labels)


def test_embedded_split_is_the_shipped_permutation_not_torchs_rng(tmp_path, monkeypatch):
    perm = nd.read_idx(embedded_mnist_dir() / "split-8000-2000-idx1-i2.gz").astype(np.int64)
    assert sorted(perm.tolist()) == list(range(10000))
    full = nd.load_embedded_mnist()

    def no_rng(*args, **kwargs):
        raise AssertionError("the embedded split must not draw random numbers")

    monkeypatch.setattr(torch, "randperm", no_rng)
    train, test = nd.embedded_mnist_split()
    assert torch.equal(train.labels, full.labels[perm[:8000]]) and torch.equal(
        test.images, full.images[perm[8000:]]
    )

    for f in embedded_mnist_dir().iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    swapped = perm.copy()
    swapped[[0, 9999]] = swapped[[9999, 0]]  # one training image moved into the test set
    write_idx(tmp_path / "split-8000-2000-idx1-i2.gz", swapped.astype(">i2"))
    monkeypatch.setattr("nsnn.data.mnist.embedded_mnist_dir", lambda: tmp_path)
    with pytest.raises(DatasetError, match=r"split-8000-2000-idx1-i2\.gz"):
        nd.embedded_mnist_split()


# --------------------------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_folder_root_or_folder_itself(tmp_path, name):
    folder = fake_cifar(tmp_path, name)
    layout = nd.CIFAR_LAYOUTS[name]
    n_train = 4 * len(layout.splits["train"])
    for root in (tmp_path, folder):
        train = nd.load_cifar_folder(root, name, "train")
        assert train.images.shape == (n_train, 3, 32, 32) and train.images.dtype == torch.uint8
        assert train.labels.dtype == torch.int64 and train.labels.shape == (n_train,)
    first = np.arange(3072).astype(np.uint8).reshape(3, 32, 32)  # row = three 32x32 channel planes
    np.testing.assert_array_equal(train.images[0].numpy(), first)
    assert train.labels[:4].tolist() == [0, 1, 2, 3]
    assert nd.load_cifar_folder(root, name, "test").images.shape == (4, 3, 32, 32)
    bundle = nd.get_dataset(name, data_dir=tmp_path)
    assert bundle.num_classes == layout.num_classes and bundle.classes[1] == "class1"
    assert (bundle.in_channels, bundle.image_size, len(bundle.mean)) == (3, 32, 3)
    assert "random crop" in bundle.describe()


def test_cifar_missing_corrupt_and_malicious(tmp_path):
    folder = fake_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError) as e:
        nd.get_dataset("cifar10", data_dir=tmp_path)
    msg = str(e.value)
    assert "data_batch_3" in msg and str(folder) in msg and "--download" in msg and "test_batch" in msg

    (folder / "data_batch_3").write_bytes((folder / "data_batch_2").read_bytes()[:100])
    with pytest.raises(DatasetError, match="corrupt file data_batch_3"):
        nd.load_cifar_folder(tmp_path, "cifar10", "train")

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DatasetError, match="refusing"):
        nd.load_cifar_folder(tmp_path, "cifar10", "train")
    assert not (tmp_path / "pwned").exists()


def test_test_only_bundles_read_a_folder_of_the_test_split_alone(tmp_path):
    """``test_only`` reads the test split's files alone (testing a checkpoint needs nothing else): a CIFAR
    folder of ``test_batch`` alone (no meta file: no class names), a DVS folder of ``test/`` alone, an
    MNIST folder of the t10k files alone, and the embedded split."""
    cifar = fake_cifar(tmp_path / "full")
    only = tmp_path / "cifar" / "cifar-10-batches-py"
    only.mkdir(parents=True)
    shutil.copy(cifar / "test_batch", only / "test_batch")
    with pytest.raises(DatasetError, match="data_batch_1"):
        nd.get_dataset("cifar10", data_dir=only.parent)
    bundle = nd.get_dataset("cifar10", data_dir=only.parent, test_only=True)
    full = nd.get_dataset("cifar10", data_dir=tmp_path / "full", test_only=True)
    assert bundle.train is None and torch.equal(bundle.test.images, full.test.images)
    assert bundle.classes == () and full.classes[1] == "class1" and bundle.source == str(only)
    assert "cifar10: test split only / 4 test, 3×32×32 uint8" in bundle.describe()
    with pytest.raises(ValueError, match="test split alone"):
        bundle.train_val_split(0.5)

    dvs = fake_dvs(tmp_path / "dvs" / "dvs-cifar10", {"test": 3})
    bundle = nd.get_dataset("dvs-cifar10", data_dir=dvs.parent, test_only=True)
    assert bundle.train is None and bundle.source == str(dvs)
    assert (len(bundle.test), bundle.time_steps, bundle.in_channels, bundle.image_size) == (3, 3, 2, 8)
    with pytest.raises(DatasetError, match=r"no train/ folder or train\.pt"):  # training needs its split
        nd.get_dataset("dvs-cifar10", data_dir=dvs.parent)

    arrays = fake_mnist(tmp_path / "mnist")
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / "mnist" / f"{stem}.gz").unlink()
    bundle = nd.get_dataset("mnist", data_dir=tmp_path / "mnist", test_only=True)
    assert bundle.train is None and bundle.source == str(tmp_path / "mnist")
    np.testing.assert_array_equal(bundle.test.images.numpy(), arrays["t10k-images-idx3-ubyte"])
    embedded = nd.get_dataset("mnist", test_only=True)
    assert embedded.train is None and torch.equal(embedded.test.labels, nd.get_dataset("mnist").test.labels)


def test_a_builder_written_before_test_only_is_still_registered_and_called(monkeypatch):
    # Builders took (data_dir, download, progress); get_dataset now passes test_only too, which broke
    # every dataset registered by an older builder (TypeError on each load).
    from nsnn.data import registry

    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))
    calls = []

    @nd.register_dataset("toy")
    def toy(data_dir, download, progress):
        calls.append((data_dir, download, progress))
        mnist = nd.get_dataset("mnist")
        return nd.DatasetBundle("toy", mnist.train, mnist.test, 10, 1, 28, None, None, source="toy")

    assert nd.get_dataset("toy").train is not None
    assert nd.get_dataset("toy", "here", test_only=True).test is not None
    assert calls == [(None, False, None), (Path("here"), False, None)]


# ------------------------------------------------------------------------------------------ downloads


def test_download_good_and_bad_md5(tmp_path):
    src = tmp_path / "src" / "blob.bin"
    src.parent.mkdir()
    src.write_bytes(np.random.default_rng(0).bytes(3_000_000))
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match="md5") as e:
        nd.download_file(src.as_uri(), out / "blob.bin", md5="0" * 32)
    assert src.as_uri() in str(e.value)
    assert not out.exists()  # no partial or temp file left, nor the folder made for it
    missing = (tmp_path / "src" / "missing.bin").as_uri()
    got = nd.download_file([missing, src.as_uri()], out / "blob.bin", md5=md5(src))  # falls to 2nd mirror
    assert got.read_bytes() == src.read_bytes() and [p.name for p in out.iterdir()] == ["blob.bin"]
    src.unlink()  # a valid existing file is kept without touching the network
    assert nd.download_file(src.as_uri(), got, md5=md5(got)) == got


def test_download_md5_either_case_and_stale_temps_of_killed_downloads(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    out = tmp_path / "out"
    out.mkdir()
    # a download killed by SIGKILL two hours ago, one still running elsewhere, another file's
    old, live = out / ".blob.bin.k1ll3d_0.tmp", out / ".blob.bin.l1ve_abc.tmp"
    other = out / ".x.bin.k1ll3d_0.tmp"
    for path in (old, live, other):
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    os.utime(other, (two_hours_ago, two_hours_ago))
    got = nd.download_file(src.as_uri(), out / "blob.bin", md5=md5(src).upper())  # md5 in upper case
    assert got.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(["blob.bin", live.name, other.name])
    for bad in ("abc", "g" * 32, None):
        with pytest.raises(ValueError, match="md5 must be 32 hexadecimal digits"):
            nd.download_file(src.as_uri(), out / "blob.bin", md5=bad)


class _BrokenMirror(http.server.BaseHTTPRequestHandler):
    """``/drop``: a chunked body cut off mid-chunk (IncompleteRead); ``/garbage``: no HTTP at all."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/drop":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"ffff\r\n" + b"x" * 100)
        else:
            self.wfile.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


def test_download_falls_back_past_broken_http_responses_and_bad_urls(tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(b"payload" * 1000)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _BrokenMirror)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    out = tmp_path / "out" / "blob.bin"
    try:
        for bad in (f"{base}/drop", f"{base}/garbage", "htp:/nowhere"):
            assert nd.download_file([bad, src.as_uri()], out, md5=md5(src), progress=False) == out
            assert out.read_bytes() == src.read_bytes()
            assert [p.name for p in out.parent.iterdir()] == [out.name]
            out.unlink()
        with pytest.raises(DatasetError) as e:
            nd.download_file([f"{base}/drop", f"{base}/garbage"], out, md5=md5(src), progress=False)
    finally:
        server.shutdown()
    assert "IncompleteRead" in str(e.value) and "BadStatusLine" in str(e.value)
    assert list(out.parent.iterdir()) == []


def test_download_offline_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DatasetError, match="offline") as e:
        nd.download_mnist(tmp_path)
    assert "name resolution" in str(e.value) and "ossci-datasets" in str(e.value)
    # what to put where instead: the file's path, and the extracted layout with this root filled in
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz") in str(e.value)
    assert "t10k-labels-idx1-ubyte[.gz]" in str(e.value) and f"(<root> = {tmp_path})" in str(e.value)
    with pytest.raises(DatasetError, match="offline") as e:
        nd.download_cifar(tmp_path)
    assert "cifar-10-batches-py/" in str(e.value) and "data_batch_5, test_batch, batches.meta" in str(e.value)
    assert f"(<root> = {tmp_path})" in str(e.value)
    assert list(tmp_path.iterdir()) == []  # MNIST/raw was made for the files: removed again, empty
    (tmp_path / "MNIST").mkdir()
    (tmp_path / "MNIST" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="offline"):
        nd.download_mnist(tmp_path)
    assert [p.name for p in (tmp_path / "MNIST").iterdir()] == ["notes.txt"]  # a user's folder stays
    # a copy with the wrong md5 already in place: said to copy the file where it already was
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"truncated")
    with pytest.raises(DatasetError, match="offline") as e:
        nd.download_cifar(tmp_path)
    assert f"The cifar-10-python.tar.gz already there has md5 {nd.md5_file(archive)}, not " in str(e.value)
    assert archive.read_bytes() == b"truncated"


def test_mnist_error_says_which_given_flags_to_omit_for_the_embedded_set(tmp_path, monkeypatch):
    # main_mnist.py --download (no --data-dir), offline, said "omit --data-dir" though none was given.
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.setenv("NSNN_DATA_DIR", str(tmp_path / "default"))
    hint = "to use the embedded MNIST test set, split 8,000 / 2,000)"
    for kwargs, omit in (
        ({"download": True}, "--download"),
        ({"data_dir": tmp_path / "nowhere"}, "--data-dir"),
        ({"data_dir": tmp_path / "nowhere", "download": True}, "--data-dir and --download"),
        # training passes --download's default folder as data_dir: --data-dir may or may not be given
        ({"data_dir": tmp_path / "default", "download": True}, "--download, and --data-dir if given,"),
    ):
        with pytest.raises(DatasetError) as e:
            nd.get_dataset("mnist", **kwargs)
        assert str(e.value).endswith(f"\n(omit {omit} {hint}"), kwargs
        assert str(e.value).count("embedded MNIST") == 1


def test_download_mnist_from_file_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    fake_mnist(mirror)
    monkeypatch.setattr(nd.mnist, "MNIST_MD5", {p.name: md5(p) for p in mirror.iterdir()})
    folder = nd.download_mnist(tmp_path / "data", mirrors=[mirror.as_uri() + "/"])
    assert folder == tmp_path / "data" / "MNIST" / "raw" and len(list(folder.iterdir())) == 4
    bundle = nd.get_dataset("mnist", data_dir=tmp_path / "data")
    assert (len(bundle.train), len(bundle.test)) == (12, 5)

    # A folder holding only the training files: --download fetches the missing test split too.
    partial = tmp_path / "partial"
    partial.mkdir()
    for p in mirror.glob("train-*"):
        (partial / p.name).write_bytes(p.read_bytes())
    with pytest.raises(DatasetError, match="t10k"):
        nd.get_dataset("mnist", data_dir=partial)
    fetch = functools.partial(nd.download_mnist, mirrors=[mirror.as_uri() + "/"])
    monkeypatch.setattr("nsnn.data.registry.download_mnist", fetch)
    bundle = nd.get_dataset("mnist", data_dir=partial, download=True)
    assert (len(bundle.train), len(bundle.test)) == (12, 5)
    assert (partial / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()


def make_tar(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return path


def test_download_cifar_archive_and_safe_extract(tmp_path, monkeypatch):
    folder = fake_cifar(tmp_path / "build")
    server = tmp_path / "server"
    server.mkdir()
    archive = server / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    layout = nd.CIFAR_LAYOUTS["cifar10"].__class__(
        **{**vars(nd.CIFAR_LAYOUTS["cifar10"]), "md5": md5(archive)}
    )
    monkeypatch.setitem(nd.CIFAR_LAYOUTS, "cifar10", layout)
    fetch = functools.partial(nd.download_cifar, base_url=server.as_uri() + "/")
    monkeypatch.setattr("nsnn.data.registry.download_cifar", fetch)
    data = tmp_path / "data"
    with pytest.raises(DatasetError):
        nd.get_dataset("cifar10", data_dir=data)
    bundle = nd.get_dataset("cifar10", data_dir=data, download=True)
    assert len(bundle.train) == 20 and (data / "cifar-10-batches-py" / "batches.meta").is_file()
    assert sorted(p.name for p in data.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    batch = data / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:50])  # damaged after the download: --download keeps it
    with pytest.raises(DatasetError, match="delete that folder to fetch a fresh copy"):
        nd.get_dataset("cifar10", data_dir=data, download=True)
    shutil.copy(folder / "data_batch_1", batch)  # whole again; then the test split or the class names go
    for lost in ("test_batch", "batches.meta"):  # missing: were loaded after --download, "Pass --download"
        moved = data / "cifar-10-batches-py" / lost
        moved.rename(tmp_path / lost)
        with pytest.raises(DatasetError, match="delete that folder to fetch a fresh copy"):
            nd.get_dataset("cifar10", data_dir=data, download=True)
        (tmp_path / lost).rename(moved)
    assert len(nd.get_dataset("cifar10", data_dir=data, download=True).test) == 4

    evil = make_tar(tmp_path / "evil.tar.gz", {"top/ok": b"1", "top/../../escape": b"x"})
    with pytest.raises(DatasetError, match="refusing"):
        nd.extract_tar(evil, tmp_path / "x", "top")
    link = make_tar(tmp_path / "link.tar.gz", {"top/ok": b"1"}, symlink="top/passwd")
    with pytest.raises(DatasetError, match="refusing"):
        nd.extract_tar(link, tmp_path / "x", "top")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "x" / "top").exists()
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar at all")
    with pytest.raises(DatasetError, match="corrupt archive"):
        nd.extract_tar(tmp_path / "junk.tar.gz", tmp_path / "y", "top")


def test_cifar_reads_any_pickle_protocol_and_any_damage_is_a_dataset_error(tmp_path):
    folder = fake_cifar(tmp_path)
    batch = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    dump(folder / "test_batch", batch, protocol=5)  # numpy arrays go through _frombuffer
    loaded = nd.load_cifar_folder(tmp_path, "cifar10", "test").images.numpy()
    np.testing.assert_array_equal(loaded, batch[b"data"].reshape(-1, 3, 32, 32))
    damaged = {  # what unpickling these raises
        "MemoryError": b"\x80\x02}r\xff\xff\xff\x7f.",  # LONG_BINPUT at memo index 2**31 - 1
        "OverflowError": b"\x80\x02\x8e" + b"\xff" * 8 + b".",  # BINBYTES8 of length 2**64 - 1
    }
    for payload in damaged.values():
        (folder / "test_batch").write_bytes(payload)
        with pytest.raises(DatasetError, match="corrupt file test_batch"):
            nd.load_cifar_folder(tmp_path, "cifar10", "test")


@pytest.mark.parametrize(
    "labels",
    [
        np.arange(4).reshape(4, 1),
        [[0], [1], [2], [3]],
        ["0", "1", "2", "3"],
        np.array(["a", "b", "c", "d"]),
        [0, 1.5, 2, 3],
        np.array([0.0, 1.0, 2.0, np.nan]),
        [True, False, True, False],
        [[0, 1], [2], [3], [4]],
        np.array(3),
    ],
    ids=["2d-array", "2d-list", "str-list", "str-array", "fraction", "nan", "bool", "ragged", "0-d"],
)
def test_cifar_labels_must_be_1d_integers(tmp_path, labels):
    folder = fake_cifar(tmp_path)
    batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": labels}
    dump(folder / "data_batch_2", batch)
    with pytest.raises(DatasetError, match=r"data_batch_2 lacks uint8 b'data' .* N integer labels") as e:
        nd.get_dataset("cifar10", data_dir=tmp_path)
    assert str(folder) in str(e.value) and "data_batch_1" in str(e.value)


def test_cifar_integral_float_labels_are_accepted(tmp_path):
    folder = fake_cifar(tmp_path)
    dump(folder / "test_batch", {b"data": np.zeros((4, 3072), np.uint8), b"labels": np.array([3.0, 1, 0, 9])})
    assert nd.load_cifar_folder(tmp_path, "cifar10", "test").labels.tolist() == [3, 1, 0, 9]


# ----------------------------------------------------------------------------------------- DVS-CIFAR10


def test_dvs_per_sample_stacked_and_errors(tmp_path):
    root = fake_dvs(tmp_path / "dvs-cifar10", {"train": 6, "test": 4})
    per_sample = nd.load_dvs_folder(tmp_path, "train")  # root or root/dvs-cifar10
    assert per_sample.images.shape == (6, 3, 2, 8, 8) and per_sample.labels.tolist() == [0, 1, 2, 3, 4, 5]
    first, label = torch.load(root / "train" / "0.pt", weights_only=True)
    assert torch.equal(per_sample.images[0], first) and label == 0
    paths = nd.pack_dvs_cifar10(root)
    assert paths["train"] == root / "train.pt"
    stacked = nd.load_dvs_folder(root, "train")
    assert torch.equal(stacked.images, per_sample.images) and torch.equal(stacked.labels, per_sample.labels)
    b = nd.get_dataset("dvs-cifar10", data_dir=tmp_path)
    assert (b.time_steps, b.in_channels, b.image_size, b.num_classes) == (3, 2, 8, 10) and b.mean is None
    assert "T=3 frames" in b.describe()

    with pytest.raises(DatasetError) as e:
        nd.get_dataset("dvs-cifar10", data_dir=tmp_path / "nowhere", download=True)
    assert "train/0.pt" in str(e.value) and str(tmp_path / "nowhere") in str(e.value)
    assert "no download" in str(e.value)
    bad = fake_dvs(tmp_path / "bad", {"train": 2, "test": 1})
    torch.save([torch.zeros(3, 2, 8, 8), 12], bad / "train" / "1.pt")
    with pytest.raises(DatasetError, match="label 12"):
        nd.load_dvs_folder(bad, "train")
    torch.save([ImageSet(torch.zeros(1, 2, 2), torch.zeros(1, dtype=torch.long)), 1], bad / "train" / "1.pt")
    with pytest.raises(DatasetError, match=r"1\.pt is not a torch file of tensors"):  # never unpickled
        nd.load_dvs_folder(bad, "train")


def test_dvs_every_sample_file_is_checked_not_only_the_first(tmp_path):
    root = fake_dvs(tmp_path / "dvs", {"train": 6, "test": 1})
    torch.save([torch.randint(0, 5, (3, 2, 8, 8)), 1], root / "train" / "5.pt")  # integer frames
    with pytest.raises(DatasetError, match=r"5\.pt frames are torch\.int64"):
        nd.load_dvs_folder(root, "train")
    torch.save([torch.rand(3, 2, 8, 8, dtype=torch.float64), 1], root / "train" / "5.pt")
    mixed = r"5\.pt frames torch\.float64 .* differ from 0\.pt's torch\.float32"
    with pytest.raises(DatasetError, match=mixed):
        nd.load_dvs_folder(root, "train")
    torch.save([torch.rand(3, 2, 8, 8), 1], root / "train" / "5.pt")
    torch.save([torch.rand(3, 2, 8, 8), 1], root / "train" / "\u00b2.pt")  # "²".isdigit() is True
    assert len(nd.load_dvs_folder(root, "train")) == 6  # not a sample file name: left alone


def test_corrupt_dvs_file_error_names_the_file_not_torchs_advice(tmp_path):
    root = fake_dvs(tmp_path / "dvs", {"train": 2, "test": 1})
    (root / "train" / "1.pt").write_text("not a tensor file")
    with pytest.raises(DatasetError) as e:
        nd.load_dvs_folder(root, "train")
    msg = str(e.value)
    assert "1.pt is not a torch file of tensors" in msg and str(root / "train") in msg
    assert "[T, 2, H, W]" in msg and "weights_only" not in msg and "checkpoint" not in msg
    assert e.value.__cause__ is None
    # bytes that start like a pickled global (opcode "c") are corrupt too, not "an object of type orrup."
    (root / "train" / "1.pt").write_bytes(b"corrupt")
    with pytest.raises(
        DatasetError, match=r"1\.pt is not a torch file .*\(wrong file type, truncated or corrupt\)"
    ):
        nd.load_dvs_folder(root, "train")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda train: (train / "3.pt").unlink(), r"sample file 3\.pt is missing"),
        (
            lambda train: shutil.copy(train / "5.pt", train / "05.pt"),
            r"5\.pt repeats sample index 5 \(05\.pt\)",
        ),
    ],
)
def test_dvs_sample_files_must_run_from_0_without_gaps_or_repeats(tmp_path, change, match):
    root = fake_dvs(tmp_path / "dvs", {"train": 8, "test": 2})
    change(root / "train")
    with pytest.raises(DatasetError, match=match):
        nd.load_dvs_folder(root, "train")


def test_dvs_sample_file_removed_while_loading_is_a_dataset_error(tmp_path, monkeypatch):
    import nsnn.data.dvs as dvs

    root = fake_dvs(tmp_path / "dvs", {"train": 2, "test": 1})
    real_load = dvs.load_torch

    def racing(path: Path, *args, **kwargs):  # another process removes the file after it was listed
        Path(path).unlink()
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(dvs, "load_torch", racing)
    with pytest.raises(DatasetError, match=r"0\.pt disappeared while loading") as e:
        nd.load_dvs_folder(root, "train")
    assert str(root / "train") in str(e.value) and e.value.__cause__ is None


@pytest.mark.parametrize(
    ("split", "shape", "problem"),
    [
        ("test", (4, 2, 8, 8), r"test frames \[T, C, H, W\] = \[4, 2, 8, 8\] differ from the train frames"),
        ("test", (3, 2, 6, 6), r"= \[3, 2, 6, 6\] differ from the train frames \[3, 2, 8, 8\]"),
        ("train", (3, 3, 8, 8), r"train frames .* = \[3, 3, 8, 8\], expected 2 polarity channels"),
        ("train", (3, 2, 8, 6), r"= \[3, 2, 8, 6\], expected .* square frames"),
    ],
    ids=["test-T", "test-HxW", "train-C", "train-not-square"],
)
@pytest.mark.parametrize("stacked", [False, True])
def test_dvs_frames_must_be_2_channel_square_and_alike_in_both_splits(
    tmp_path, split, shape, problem, stacked
):
    root = fake_dvs(tmp_path / "dvs", {"train": 2, "test": 2})
    other = fake_dvs(tmp_path / "other", {split: 2}, shape=shape)
    for i in range(2):
        (root / split / f"{i}.pt").write_bytes((other / split / f"{i}.pt").read_bytes())
    if stacked:
        nd.pack_dvs_cifar10(root)
    with pytest.raises(DatasetError, match=problem) as e:
        nd.get_dataset("dvs-cifar10", data_dir=root)
    where = root / (f"{split}.pt" if stacked else split)
    assert f"at {where}\n" in str(e.value) and "[T, 2, H, W]" in str(e.value)


# --------------------------------------------------------------------------------------- augmentation


def unique_batch(b: int = 6, c: int = 2, h: int = 9, w: int = 11) -> torch.Tensor:
    return torch.arange(1, b * c * h * w + 1, dtype=torch.int64).reshape(b, c, h, w)


def test_random_crop_equals_padded_source_region():
    x, p = unique_batch(), 3
    out = random_crop(x, p, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    offsets = []
    for b in range(x.shape[0]):
        matches = [
            (oy, ox)
            for oy in range(2 * p + 1)
            for ox in range(2 * p + 1)
            if torch.equal(out[b], padded[b, :, oy : oy + x.shape[2], ox : ox + x.shape[3]])
        ]
        assert len(matches) == 1
        offsets.append(matches[0])
    assert len(set(offsets)) > 1  # per-sample offsets


def test_roll_flip_cutout_exact():
    x = unique_batch(b=16)
    g = torch.Generator().manual_seed(1)
    rolled = random_roll(x, 2, g)
    for b in range(16):
        shifts = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(rolled[b], torch.roll(x[b], (dy, dx), (1, 2)))
        ]
        assert len(shifts) == 1
    flipped = random_hflip(x, 0.5, g)
    was_flipped = [torch.equal(flipped[b], x[b].flip(-1)) for b in range(16)]
    assert all(was_flipped[b] or torch.equal(flipped[b], x[b]) for b in range(16))
    assert 0 < sum(was_flipped) < 16
    assert torch.equal(random_hflip(x, 1.0, g), x.flip(-1)) and torch.equal(random_hflip(x, 0.0, g), x)
    cut = cutout(x, 4, g)
    zero = cut == 0
    assert torch.equal(cut[~zero], x[~zero]) and torch.equal(zero[:, 0], zero[:, 1])
    for b in range(16):
        rows, cols = zero[b, 0].any(1).nonzero().flatten(), zero[b, 0].any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
        assert zero[b, 0].sum() == len(rows) * len(cols)  # one axis-aligned (clipped) square
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()


def test_augment_uint8_dvs_shared_and_deterministic():
    aug = Augment(crop_padding=4, flip=True, cutout=8)
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a = aug(x, torch.Generator().manual_seed(5))
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(6)))

    frame = torch.rand(8, 1, 2, 12, 12)
    dvs = frame.expand(8, 5, 2, 12, 12).contiguous()  # 5 identical frames per sample
    out = Augment(crop_padding=3, roll=2, flip=True, cutout=4)(dvs, torch.Generator().manual_seed(2))
    assert out.shape == dvs.shape and out.dtype == torch.float32
    assert torch.equal(out, out[:, :1].expand_as(out))  # same transform for every frame
    assert not torch.equal(out[0], out[1]) and Augment()(dvs) is dvs
    with pytest.raises(ValueError, match="crop_padding"):
        Augment(crop_padding=-1)
    # Augment(flip="no") flipped half the images and cutout=2.5 passed unchecked
    for bad, match in (
        ({"cutout": 2.5}, "cutout must be an integer >= 0"),
        ({"roll": True}, "roll must be an integer >= 0"),
        ({"flip": "no"}, "flip must be True or False"),
    ):
        with pytest.raises(ValueError, match=match):
            Augment(**bad)
    assert type(Augment(cutout=np.int64(3)).cutout) is int


def test_data_folders_expand_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    fake_cifar(tmp_path / "datasets")
    assert len(nd.get_dataset("cifar10", data_dir="~/datasets").train) == 20  # was "no folder at ~/datasets"
    monkeypatch.setenv("NSNN_DATA_DIR", "~/datasets")
    assert nd.default_data_dir() == tmp_path / "datasets"
    assert len(nd.get_dataset("cifar10").test) == 4


# ------------------------------------------------------------------------------------ validation split


def test_validation_split_disjoint_complete_deterministic_stratified():
    labels = torch.arange(10).repeat_interleave(torch.tensor([50, 50, 50, 50, 50, 50, 50, 50, 50, 53]))
    tr, va = split_indices(labels, 0.1, seed=3)
    assert len(va) == round(0.1 * len(labels)) and len(tr) + len(va) == len(labels)
    assert torch.equal(torch.sort(torch.cat([tr, va])).values, torch.arange(len(labels)))
    assert torch.bincount(labels[va], minlength=10)[:9].tolist() == [5] * 9
    tr2, va2 = split_indices(labels, 0.1, seed=3)
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    assert not torch.equal(va, split_indices(labels, 0.1, seed=4)[1])
    _, va_plain = split_indices(labels, 0.25, seed=0, stratify=False)
    assert len(va_plain) == 126
    data = ImageSet(torch.zeros(len(labels), 2, 2, dtype=torch.uint8), labels)
    train, val = nd.train_val_split(data, 0.1, seed=3)
    assert torch.equal(val.labels, labels[va]) and len(train) == len(tr)
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(labels, 1.0)


# --------------------------------------------------------------------------------------------- loader


def tiny_set(n: int = 10) -> ImageSet:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    return ImageSet(images, torch.arange(n) % 3)


def ids(loader: TensorLoader) -> list[int]:
    return [int(i) for _, y in loader for i in y]


def test_loader_normalises_and_adds_channel():
    mnist = ImageSet(torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8), torch.arange(7))
    loader = TensorLoader.from_set(mnist, 3, mean=(0.1307,), std=(0.3081,))
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and batches[-1][0].shape == (1, 1, 28, 28)
    x, y = batches[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    expected = (mnist.images[:3, None].float() / 255 - 0.1307) / 0.3081
    assert (x - expected).abs().max() < 1e-5
    cifar = tiny_set()
    x, _ = next(iter(TensorLoader.from_set(cifar, 4, mean=nd.CIFAR10_MEAN, std=nd.CIFAR10_STD)))
    mean, std = torch.tensor(nd.CIFAR10_MEAN).view(3, 1, 1), torch.tensor(nd.CIFAR10_STD).view(3, 1, 1)
    assert (x - (cifar.images[:4].float() / 255 - mean) / std).abs().max() < 1e-5
    frames = torch.rand(5, 3, 2, 4, 4)
    fx, _ = next(iter(TensorLoader(frames, torch.arange(5), 5)))
    assert torch.equal(fx, frames)  # float frames pass through unnormalised
    with pytest.raises(ValueError, match="rank"):
        TensorLoader(frames, torch.arange(5), 2, rank=2, world_size=2)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"labels": torch.tensor([0.9, 1.5, 2.2, 3.7])}, "labels must be integers"),
        ({"labels": torch.tensor(3)}, r"labels \[N\]"),
        ({"images": torch.zeros(4, dtype=torch.uint8)}, r"images \[N, H, W\]"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"seed": 1.7}, "seed must be an integer"),
        ({"rank": 0.5, "world_size": 2}, "rank must be an integer"),
        ({"batch_size": True}, "batch_size must be an integer"),
        ({"mean": [0.5], "std": [float("nan")]}, "finite entries"),
        ({"mean": [float("inf")], "std": [0.5]}, "finite entries"),
        ({"mean": 0.5, "std": 0.0}, r"std > 0\), got mean=\[0.5\], std=\[0.0\]"),  # was a TypeError
    ],
)
def test_loader_refuses_bad_arguments_when_built(change, match):
    args = {"images": torch.zeros(4, 1, 2, 2, dtype=torch.uint8), "labels": torch.arange(4), "batch_size": 2}
    args.update(change)
    with pytest.raises(ValueError, match=match):
        TensorLoader(**args)
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    ok = TensorLoader(images, torch.arange(4), np.int64(2), seed=np.int64(3))  # numpy integers are fine
    assert len(ok) == 2 and ok.batch_size == 2 and type(ok.batch_size) is int


def test_loader_shards_disjointly_and_reproduces_epochs():
    data = tiny_set(10)
    labels = torch.arange(10)  # labels = indices, to read back which samples came out
    ranks = [TensorLoader(data.images, labels, 2, shuffle=True, seed=7, rank=r, world_size=2) for r in (0, 1)]
    seen = [ids(r) for r in ranks]
    assert set(seen[0]).isdisjoint(seen[1]) and sorted(seen[0] + seen[1]) == list(range(10))
    assert len(ranks[0]) == len(ranks[1]) == 3

    uneven = [TensorLoader(data.images[:9], labels[:9], 4, rank=r, world_size=2) for r in (0, 1)]
    assert len(uneven[0]) == len(uneven[1]) and set(ids(uneven[0]) + ids(uneven[1])) == set(range(9))
    dropped = [
        TensorLoader(data.images[:9], labels[:9], 2, drop_last=True, rank=r, world_size=2) for r in (0, 1)
    ]
    assert [len(d) for d in dropped] == [2, 2] and set(ids(dropped[0])).isdisjoint(ids(dropped[1]))

    a = TensorLoader(data.images, labels, 3, shuffle=True, seed=7, augment=Augment(crop_padding=1, flip=True))
    b = TensorLoader(data.images, labels, 3, shuffle=True, seed=7, augment=Augment(crop_padding=1, flip=True))
    a.set_epoch(4)
    b.set_epoch(4)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):  # same (seed, epoch): same order and augmentation
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    a.set_epoch(4)
    order4 = ids(a)
    a.set_epoch(5)
    assert ids(a) != order4 and sorted(ids(a)) == list(range(10))
    a.set_epoch(4)
    assert ids(a) == order4
    host = TensorLoader(data.images, labels, 3, shuffle=True, seed=7, resident=False)
    host.set_epoch(4)
    assert ids(host) == order4


def test_loader_draws_a_new_epoch_on_every_pass_unless_one_is_set():
    # Each pass of a loop without set_epoch replayed epoch 0: the same order and the same crops.
    data = tiny_set(10)
    labels = torch.arange(10)
    loader = TensorLoader(
        data.images, labels, 4, shuffle=True, seed=3, augment=Augment(crop_padding=1, flip=True)
    )

    def one_pass() -> tuple[list[int], torch.Tensor]:
        batches = list(loader)
        return torch.cat([y for _, y in batches]).tolist(), torch.cat([x for x, _ in batches])

    passes = [one_pass() for _ in range(3)]
    assert loader.epoch == 2
    assert len({tuple(order) for order, _ in passes}) == 3
    for epoch, (order, x) in enumerate(passes):  # pass k is epoch k, as set_epoch(k) reproduces it
        loader.set_epoch(epoch)
        again, x_again = one_pass()
        assert again == order and torch.equal(x_again, x)
    assert loader.indices().tolist() == passes[2][0]  # the current epoch's indices
    with pytest.raises(ValueError, match="epoch must be an integer"):
        loader.set_epoch(1.5)
