"""CIFAR10-DVS: AEDAT decoding, equal-count frames, split, cache, npz inputs, augmentation."""

import numpy as np
import pytest
import torch

from training.data import dvs

HEADER = (
    b"#!AER-DAT2.0\r\n"
    b"# This is a raw AE data file - do not edit\r\n"
    b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
)


def write_aedat(path, x_raw, y_raw, p_raw, t, extra_bits=0):
    """An AEDAT 2.0 file in the CIFAR10-DVS format: header, then big-endian (address, time)."""
    address = (np.asarray(y_raw) << 8) | (np.asarray(x_raw) << 1) | np.asarray(p_raw) | extra_bits
    records = np.stack([address, np.asarray(t)], axis=1).astype(">u4")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HEADER + records.tobytes())


def random_events(num_events, seed):
    rng = np.random.default_rng(seed)
    x, y, p = (rng.integers(0, high, num_events) for high in (128, 128, 2))
    return x, y, p, np.arange(num_events) * 7


def reference_frames(events, T):
    """SpikingJelly's loops: j_l = i * (N // T), j_r = j_l + N // T, last j_r = N."""
    N, frames = len(events["x"]), np.zeros((T, 2, 128, 128), np.float32)
    for i in range(T):
        j_r = N if i == T - 1 else (i + 1) * (N // T)
        for k in range(i * (N // T), j_r):
            frames[i, int(events["p"][k] != 0), events["y"][k], events["x"][k]] += 1
    return frames


def write_dataset(root, indices, num_events=lambda label, index: 5):
    """One .aedat file per class and index, named as the original files."""
    for label, name in enumerate(dvs.CLASSES):
        for index in indices:
            events = random_events(num_events(label, index), seed=100 * label + index)
            write_aedat(root / name / f"cifar10_{name}_{index}.aedat", *events)


def test_read_aedat_decodes_known_events(tmp_path):
    path = tmp_path / "a.aedat"
    write_aedat(path, [3, 127, 0], [10, 0, 127], [1, 0, 1], [5, 6, 9], extra_bits=1 << 16)
    events = dvs.read_aedat(path)
    # SpikingJelly orientation: (x, y, p) <- (127 - y_raw, 127 - x_raw, 1 - p_raw)
    np.testing.assert_array_equal(events["x"], [117, 127, 0])
    np.testing.assert_array_equal(events["y"], [124, 0, 127])
    np.testing.assert_array_equal(events["p"], [0, 1, 0])
    np.testing.assert_array_equal(events["t"], [5, 6, 9])


def test_read_aedat_rejects_partial_records(tmp_path):
    path = tmp_path / "a.aedat"
    path.write_bytes(HEADER + b"\x00" * 12)
    with pytest.raises(ValueError, match="not a multiple of 8"):
        dvs.read_aedat(path)


@pytest.mark.parametrize("num_events, T", [(23, 4), (20, 4), (3, 4), (0, 2), (50, 1)])
def test_integrate_frames_equal_counts(num_events, T):
    x, y, p, _ = random_events(num_events, seed=num_events)
    events = {"x": x, "y": y, "p": p}
    frames = dvs.integrate_frames(events, T)
    assert frames.shape == (T, 2, 128, 128) and frames.dtype == np.float32
    np.testing.assert_array_equal(frames, reference_frames(events, T))
    per_slice = [num_events // T] * (T - 1) + [num_events - (T - 1) * (num_events // T)]
    np.testing.assert_array_equal(frames.sum(axis=(1, 2, 3)), per_slice)


def test_resize_frames():
    frames = np.full((3, 2, 128, 128), 2.5, np.float32)
    resized = dvs.resize_frames(frames, 48)
    assert resized.shape == (3, 2, 48, 48) and resized.dtype == torch.float32
    torch.testing.assert_close(resized, torch.full_like(resized, 2.5))


def test_split_in_natural_order(tmp_path):
    # 5 + index + 20 * label events per file, so a frame's sum names its file; "_10" sorts last.
    write_dataset(tmp_path, [0, 2, 10], num_events=lambda label, index: 5 + index + 20 * label)
    x_train, y_train, x_test, y_test = dvs.load_cifar10_dvs(
        tmp_path, T=2, size=128, train_fraction=2 / 3
    )
    assert x_train.shape == (20, 2, 2, 128, 128) and x_test.shape == (10, 2, 2, 128, 128)
    np.testing.assert_array_equal(y_train, np.repeat(np.arange(10), 2))
    np.testing.assert_array_equal(y_test, np.arange(10))
    train_files = [(label, index) for label in range(10) for index in (0, 2)]
    np.testing.assert_array_equal(
        x_train.sum(dim=(1, 2, 3, 4)), [5 + i + 20 * label for label, i in train_files]
    )
    np.testing.assert_array_equal(
        x_test.sum(dim=(1, 2, 3, 4)), [15 + 20 * lab for lab in range(10)]
    )
    assert y_train.dtype == torch.int64 and x_train.dtype == torch.float32


def test_second_load_reads_cache(tmp_path, monkeypatch):
    write_dataset(tmp_path / "data", [0, 1])
    options = {"T": 2, "size": 16, "train_fraction": 0.5, "cache_dir": tmp_path / "cache"}
    first = dvs.load_cifar10_dvs(tmp_path / "data", **options)
    cached = tmp_path / "cache" / "frames_T2_16" / "truck" / "cifar10_truck_1.npz"
    assert cached.exists() and not list((tmp_path / "cache").rglob("*.tmp"))

    def fail(*args):
        raise AssertionError("cache miss")

    monkeypatch.setattr(dvs, "_source_frames", fail)
    second = dvs.load_cifar10_dvs(tmp_path / "data", **options)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert first[0].shape == (10, 2, 2, 16, 16) and first[2].shape == (10, 2, 2, 16, 16)


def test_npz_inputs_match_aedat(tmp_path):
    write_dataset(tmp_path / "aedat", [0, 1])
    for name in dvs.CLASSES:
        for index in (0, 1):
            source = tmp_path / "aedat" / name / f"cifar10_{name}_{index}.aedat"
            events = dvs.read_aedat(source)
            target = tmp_path / "npz" / name / f"cifar10_{name}_{index}.npz"
            target.parent.mkdir(parents=True, exist_ok=True)
            if index == 0:  # SpikingJelly frames_number_3_split_by_number (float64 counts)
                np.savez_compressed(target, frames=dvs.integrate_frames(events, 3).astype(float))
            else:  # SpikingJelly events_np (already oriented)
                np.savez(target, **events)
    from_aedat = dvs.load_cifar10_dvs(tmp_path / "aedat", T=3, size=48)
    from_npz = dvs.load_cifar10_dvs(tmp_path / "npz", T=3, size=48)
    for a, b in zip(from_aedat, from_npz):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"expected \[T=2, 2, H, W\]"):
        dvs.load_cifar10_dvs(tmp_path / "npz", T=2, size=48)


def test_train_fraction_is_checked(tmp_path):
    with pytest.raises(ValueError, match="train_fraction must be in"):
        dvs.load_cifar10_dvs(tmp_path, train_fraction=1.5)


def test_missing_files_name_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no \.aedat or \.npz files under .*airplane"):
        dvs.load_cifar10_dvs(tmp_path)
    write_dataset(tmp_path, [0])
    (tmp_path / "ship" / "cifar10_ship_0.aedat").unlink()
    with pytest.raises(FileNotFoundError, match=r"ship/; expected .*/airplane/\*\.aedat"):
        dvs.load_cifar10_dvs(tmp_path)


def reference_flip_roll(x, is_flipped, shifts):
    """Per sample ``[B, ...]``: the official torch.flip then torch.roll."""
    out = []
    for sample, flip, (dy, dx) in zip(x, is_flipped.tolist(), shifts.tolist()):
        sample = torch.flip(sample, dims=(-1,)) if flip else sample
        out.append(torch.roll(sample, shifts=(dy, dx), dims=(-2, -1)))
    return torch.stack(out)


def test_flip_roll_matches_official_ops():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 2, 7, 9, generator=generator)  # [B, T, 2, H, W]; H != W
    is_flipped = torch.tensor([True, False, True, False, True, False])
    shifts = torch.tensor([[0, 0], [5, -5], [-5, 5], [3, -1], [-2, 4], [1, 1]])
    expected = reference_flip_roll(x, is_flipped, shifts)
    torch.testing.assert_close(dvs.flip_roll(x, is_flipped, shifts), expected, rtol=0, atol=0)
    time_major = dvs.flip_roll(x.transpose(0, 1), is_flipped, shifts, batch_dim=1)
    torch.testing.assert_close(time_major.transpose(0, 1), expected, rtol=0, atol=0)


def test_augment_dvs_permutes_pixels_and_is_seeded():
    x = torch.rand(8, 2, 2, 12, 12, generator=torch.Generator().manual_seed(0))
    original = x.clone()
    a = dvs.augment_dvs(x, torch.Generator().manual_seed(1))
    b = dvs.augment_dvs(x, torch.Generator().manual_seed(1))
    c = dvs.augment_dvs(x, torch.Generator().manual_seed(2))
    torch.testing.assert_close(x, original, rtol=0, atol=0)  # input untouched
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    # flips and rolls move whole pixels, the same way for every time step and channel
    torch.testing.assert_close(a.flatten(1).sort().values, x.flatten(1).sort().values)
    index = torch.arange(144.0).view(12, 12).expand(8, 2, 2, 12, 12)
    moved = dvs.augment_dvs(index, torch.Generator().manual_seed(1))
    assert (moved == moved[:, :1, :1]).all()


def test_draw_augmentation_distribution():
    is_flipped, shifts = dvs.draw_augmentation(4000, torch.Generator().manual_seed(0))
    assert shifts.shape == (4000, 2)
    assert set(shifts.unique().tolist()) == set(range(-5, 6))  # randint(-5, 5) is inclusive
    # Binomial(4000, 0.5): std 0.0079; 5 sigma
    assert abs(is_flipped.float().mean().item() - 0.5) < 0.04
    counts = torch.bincount(shifts.flatten() + 5, minlength=11).float() / shifts.numel()
    assert (counts - 1 / 11).abs().max() < 0.02  # std of each share ~0.0045


def test_resize_matches_pil_bilinear():
    """The official loader resized with PIL's bilinear filter (torchvision ``Resize((48, 48))``)."""
    Image = pytest.importorskip("PIL.Image")  # a matplotlib dependency
    frame = np.random.default_rng(0).random((128, 128), dtype=np.float32) * 5
    expected = np.asarray(Image.fromarray(frame, mode="F").resize((48, 48), Image.BILINEAR))
    resized = dvs.resize_frames(frame[None, None], 48)[0, 0].numpy()
    np.testing.assert_allclose(resized, expected, rtol=0, atol=1e-4)  # float32 filter sums
