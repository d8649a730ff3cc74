"""Readers and writers: every format round-trips the same video; bad files give one clear error."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from monai.transforms import LoadImaged

from stbv_monai.data import VideoReader, read_mask, read_video, video_format, write_mask, write_video
from stbv_monai.errors import InputError


@pytest.fixture(scope="module")
def video() -> tuple[np.ndarray, np.ndarray]:
    """A smooth 8-bit video (codecs keep smooth content nearly exact) and a moving disc mask."""
    t, h, w = 6, 48, 64
    yy, xx = np.mgrid[:h, :w]
    frames = np.stack([0.5 + 0.4 * np.sin(xx / 7.0 + k) * np.cos(yy / 9.0) for k in range(t)])
    frames = np.round(frames * 255) / 255
    mask = np.stack([((yy - 24) ** 2 + (xx - 20 - 3 * k) ** 2 < 100) for k in range(t)]).astype(np.uint8)
    return frames.astype(np.float32), mask


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.dcm", "frames_png"])
def test_lossless_formats_round_trip_exactly(tmp_path, video, name):
    frames, _ = video
    write_video(tmp_path / name, frames, spacing=(0.2, 0.3), fps=12)
    out = read_video(tmp_path / name)
    np.testing.assert_array_equal(out.frames, frames)
    assert out.frames.dtype == np.float32
    if name != "frames_png":  # PNG folders carry no spacing
        assert out.spacing == pytest.approx((0.2, 0.3))


def test_mp4_round_trips_within_codec_tolerance(tmp_path, video):
    frames, _ = video
    write_video(tmp_path / "v.mp4", frames, fps=12)
    out = read_video(tmp_path / "v.mp4")
    assert out.frames.shape == frames.shape
    assert np.abs(out.frames - frames).mean() < 2 / 255
    assert np.abs(out.frames - frames).max() < 16 / 255
    assert out.fps == pytest.approx(12)


@pytest.mark.parametrize("name", ["m.nii.gz", "m.dcm", "m_png"])
def test_masks_round_trip(tmp_path, video, name):
    _, mask = video
    write_mask(tmp_path / name, mask)
    np.testing.assert_array_equal(read_mask(tmp_path / name), mask)


def test_png_folder_with_rgb_frames_and_0_255_masks(tmp_path, video):
    import imageio.v3 as iio

    frames, mask = video
    (tmp_path / "img" / "vid").mkdir(parents=True)
    (tmp_path / "msk" / "vid").mkdir(parents=True)
    for t in range(len(frames)):  # unpadded numbers must still sort in time order
        gray = np.round(frames[t] * 255).astype(np.uint8)
        iio.imwrite(tmp_path / "img" / "vid" / f"frame{t}.png", np.stack([gray] * 3, -1))
        iio.imwrite(tmp_path / "msk" / "vid" / f"frame{t}.png", mask[t] * 255)
    out = read_video(tmp_path / "img" / "vid")
    assert np.abs(out.frames - frames).max() <= 1 / 255 + 1e-6
    np.testing.assert_array_equal(read_mask(tmp_path / "msk" / "vid"), mask)


def test_monai_loader_gives_time_as_channel(tmp_path, video):
    frames, mask = video
    write_video(tmp_path / "v.nii.gz", frames, spacing=(0.2, 0.3))
    write_mask(tmp_path / "m.nii.gz", mask)
    data = {"image": str(tmp_path / "v.nii.gz"), "label": str(tmp_path / "m.nii.gz")}
    data = LoadImaged("image", reader=VideoReader(), image_only=True)(data)
    data = LoadImaged("label", reader=VideoReader(mask=True), image_only=True)(data)
    assert tuple(data["image"].shape) == frames.shape
    np.testing.assert_allclose(data["image"].numpy(), frames)
    np.testing.assert_array_equal(data["label"].numpy(), mask)
    np.testing.assert_allclose(data["image"].pixdim.numpy(), (0.2, 0.3), rtol=1e-6)


def test_atomic_write_keeps_previous_file_on_failure(tmp_path, video):
    frames, _ = video
    target = tmp_path / "v.nii.gz"
    write_video(target, frames)
    before = target.read_bytes()
    with pytest.raises(InputError):
        write_video(target, frames[0])  # wrong rank: nothing may be written
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.nii.gz"]


# ----------------------------------------------------------------------------- bad input


def test_unreadable_file(tmp_path):
    bad = tmp_path / "noise.nii.gz"
    bad.write_bytes(b"this is not a nifti file")
    with pytest.raises(InputError, match=r"noise\.nii\.gz: cannot read video"):
        read_video(bad)


def test_truncated_nifti(tmp_path, video):
    frames, _ = video
    good = write_video(tmp_path / "v.nii.gz", frames)
    raw = gzip.decompress(good.read_bytes())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(InputError, match=r"cut\.nii\.gz: cannot read video"):
        read_video(cut)


def test_truncated_mp4(tmp_path, video):
    frames, _ = video
    good = write_video(tmp_path / "v.mp4", frames)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match=r"cut\.mp4"):
        read_video(cut)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_video(tmp_path / "nope.nii.gz")
    with pytest.raises(InputError, match="unsupported video format"):
        video_format(tmp_path / "clip.xyz")


def test_too_few_frames(tmp_path, video):
    frames, _ = video
    write_video(tmp_path / "short.nii.gz", frames[:2])
    with pytest.raises(InputError, match=r"short\.nii\.gz: video has 2 frame\(s\); at least 3"):
        read_video(tmp_path / "short.nii.gz")


def test_mask_values_other_than_binary(tmp_path, video):
    _, mask = video
    import nibabel as nib

    bad = (mask * 2).astype(np.uint8)
    bad[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(bad.transpose(2, 1, 0), np.eye(4)), str(tmp_path / "m.nii.gz"))
    with pytest.raises(InputError, match=r"m\.nii\.gz: mask values must be \{0, 1\} or \{0, 255\}, found \{0, 2, 7\}"):
        read_mask(tmp_path / "m.nii.gz")


def test_masks_must_be_lossless(tmp_path, video):
    _, mask = video
    with pytest.raises(InputError, match="losslessly"):
        write_mask(tmp_path / "m.mp4", mask)


def test_nan_frames_rejected(tmp_path, video):
    import nibabel as nib

    frames, _ = video
    bad = frames.copy()
    bad[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(bad.transpose(2, 1, 0), np.eye(4)), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(InputError, match="NaN"):
        read_video(tmp_path / "nan.nii.gz")
