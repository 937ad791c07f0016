"""MetaImage reading: voxels and geometry identical to SimpleITK, and precise errors."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungmonai.io import read_ct
from lungmonai.io.errors import CTReadError
from lungmonai.io.metaimage import parse_header

from tests.helpers import read_error

# Non-symmetric and non-orthogonal: a transposition slip in TransformMatrix handling shows up.
DIRECTION = np.array([[0.9, 0.2, -0.1], [0.15, 1.0, 0.3], [0.0, -0.25, 1.1]])
SPACING = (0.7, 0.8, 2.5)
ORIGIN = (-150.5, 20.25, -300.0)
NUMPY_TYPES = {
    "MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2",
    "MET_INT": "i4", "MET_UINT": "u4", "MET_FLOAT": "f4", "MET_DOUBLE": "f8",
}


def hu_volume(shape=(4, 5, 6), low=-1024, high=2000, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, shape).astype(np.int16)


def header_fields(shape_irc, element_type="MET_SHORT", data_file="ct.raw", msb=False,
                  compressed=False) -> dict[str, str]:
    """A header as SimpleITK writes it, as an editable dict (insertion order kept)."""
    z, y, x = shape_irc
    return {
        "ObjectType": "Image",
        "NDims": "3",
        "BinaryData": "True",
        "BinaryDataByteOrderMSB": str(msb),
        "CompressedData": str(compressed),
        "TransformMatrix": " ".join(repr(float(v)) for v in DIRECTION.T.ravel()),
        "Offset": " ".join(repr(v) for v in ORIGIN),
        "ElementSpacing": " ".join(repr(v) for v in SPACING),
        "DimSize": f"{x} {y} {z}",
        "ElementType": element_type,
        "ElementDataFile": data_file,
    }


def write_mhd(path: Path, voxels: np.ndarray, element_type="MET_SHORT", msb=False,
              compressed=False, **edits: str | None) -> Path:
    """Write ``voxels`` (irc order) by hand; ``edits`` replace header keys (None drops one)."""
    data_name = path.with_suffix(".zraw" if compressed else ".raw").name
    fields = header_fields(voxels.shape, element_type, data_name, msb, compressed)
    for key, value in edits.items():
        fields.pop(key, None)
        if value is not None:
            fields[key] = value
    fields["ElementDataFile"] = fields.pop("ElementDataFile", data_name)  # must stay last
    path.write_text("".join(f"{k} = {v}\n" for k, v in fields.items()))
    dtype = np.dtype((">" if msb else "<") + NUMPY_TYPES[element_type])
    data = voxels.astype(dtype).tobytes()
    (path.parent / data_name).write_bytes(zlib.compress(data) if compressed else data)
    return path


def assert_matches_sitk(path: Path) -> None:
    volume = read_ct(path)
    image = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(volume.hu, sitk.GetArrayFromImage(image))
    assert volume.hu.dtype == np.int16
    np.testing.assert_allclose(volume.geometry.origin_xyz, image.GetOrigin(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(volume.geometry.spacing_xyz, image.GetSpacing(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        volume.geometry.direction, np.reshape(image.GetDirection(), (3, 3)), rtol=0, atol=1e-12
    )


def sitk_image(voxels: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(voxels)
    image.SetOrigin(ORIGIN)
    image.SetSpacing(SPACING)
    image.SetDirection(DIRECTION.ravel())
    return image


@pytest.mark.parametrize("compressed", [False, True])
def test_simpleitk_written_file_round_trips(tmp_path: Path, compressed: bool) -> None:
    hu = hu_volume()
    path = tmp_path / "1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860.mhd"
    sitk.WriteImage(sitk_image(hu), str(path), useCompression=compressed)
    assert path.with_suffix(".zraw" if compressed else ".raw").exists()
    volume = read_ct(path)
    np.testing.assert_array_equal(volume.hu, hu)
    np.testing.assert_allclose(volume.geometry.direction, DIRECTION, atol=1e-12)
    assert volume.series_uid == path.stem
    assert volume.source == path
    assert volume.hu.flags.writeable
    assert_matches_sitk(path)


@pytest.mark.parametrize("element_type", sorted(NUMPY_TYPES))
@pytest.mark.parametrize("msb", [False, True], ids=["little-endian", "big-endian"])
def test_element_types_and_byte_orders_match_sitk(tmp_path: Path, element_type: str, msb: bool) -> None:
    is_float = element_type in ("MET_FLOAT", "MET_DOUBLE")
    info = None if is_float else np.iinfo(NUMPY_TYPES[element_type])
    low = max(info.min, -1024) if info else -1024
    high = min(info.max, 2000) if info else 2000
    voxels = hu_volume(low=low, high=high).astype(NUMPY_TYPES[element_type])
    path = write_mhd(tmp_path / "ct.mhd", voxels, element_type, msb=msb)
    volume = read_ct(path)
    np.testing.assert_array_equal(volume.hu, voxels.astype(np.int16))
    assert volume.hu.dtype == np.dtype(np.int16) and volume.hu.dtype.isnative
    assert_matches_sitk(path)


def test_element_byte_order_msb_key_is_honoured(tmp_path: Path) -> None:
    voxels = hu_volume()
    path = write_mhd(tmp_path / "ct.mhd", voxels, msb=True, BinaryDataByteOrderMSB=None,
                     ElementByteOrderMSB="True")
    np.testing.assert_array_equal(read_ct(path).hu, voxels)
    assert_matches_sitk(path)


def test_zraw_round_trips_big_endian(tmp_path: Path) -> None:
    voxels = hu_volume()
    path = write_mhd(tmp_path / "ct.mhd", voxels, msb=True, compressed=True)
    np.testing.assert_array_equal(read_ct(path).hu, voxels)
    assert_matches_sitk(path)


def test_float_voxels_are_rounded_to_nearest_hu(tmp_path: Path) -> None:
    voxels = np.full((3, 4, 5), -999.6, dtype=np.float32)
    voxels[0, 0, 0] = 40.4
    hu = read_ct(write_mhd(tmp_path / "ct.mhd", voxels, "MET_FLOAT")).hu
    assert hu[0, 0, 0] == 40 and hu[1, 1, 1] == -1000


def test_local_data_in_mha(tmp_path: Path) -> None:
    hu = hu_volume()
    path = tmp_path / "ct.mha"
    sitk.WriteImage(sitk_image(hu), str(path))
    np.testing.assert_array_equal(read_ct(path).hu, hu)
    assert_matches_sitk(path)


def test_header_size_skips_leading_bytes(tmp_path: Path) -> None:
    voxels = hu_volume()
    path = write_mhd(tmp_path / "ct.mhd", voxels, HeaderSize="7")
    raw = path.with_suffix(".raw")
    raw.write_bytes(b"garbage" + raw.read_bytes())
    np.testing.assert_array_equal(read_ct(path).hu, voxels)


def test_header_geometry_uses_itk_column_convention(tmp_path: Path) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume())
    np.testing.assert_allclose(parse_header(path).geometry.direction, DIRECTION, atol=1e-15)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("compressed", [False, True])
def test_missing_data_file(tmp_path: Path, compressed: bool) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(), compressed=compressed)
    data = path.with_suffix(".zraw" if compressed else ".raw")
    data.unlink()
    message = read_error(path)
    assert "missing" in message and str(data) in message


def test_truncated_raw(tmp_path: Path) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume())
    raw = path.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:-100])
    message = read_error(path)
    assert "truncated" in message and "ct.raw" in message and "240 bytes" in message


def test_truncated_zraw(tmp_path: Path) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(low=-1000, high=1000, shape=(8, 16, 16)), compressed=True)
    zraw = path.with_suffix(".zraw")
    zraw.write_bytes(zraw.read_bytes()[: zraw.stat().st_size // 2])
    message = read_error(path)
    assert "truncated" in message and "ct.zraw" in message


def test_corrupt_zraw(tmp_path: Path) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(), compressed=True)
    path.with_suffix(".zraw").write_bytes(b"this is not deflate data at all")
    message = read_error(path)
    assert "corrupt" in message and "ct.zraw" in message


@pytest.mark.parametrize("compressed", [False, True])
def test_dimsize_not_matching_data(tmp_path: Path, compressed: bool) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(), compressed=compressed, DimSize="6 5 3")
    message = read_error(path)
    assert "DimSize" in message and "does not match" in message


def test_dimsize_too_large_for_compressed_data(tmp_path: Path) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(), compressed=True, DimSize="6 5 5")
    message = read_error(path)
    assert "DimSize" in message and "does not match" in message


@pytest.mark.parametrize("element_type", ["MET_LONG", "MET_ULONG_LONG", "MET_FLOAT_ARRAY", "MET_STRING"])
def test_unsupported_pixel_type(tmp_path: Path, element_type: str) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(), ElementType=element_type)
    message = read_error(path)
    assert "unsupported pixel type" in message and element_type in message


def test_multichannel_is_unsupported(tmp_path: Path) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(), ElementNumberOfChannels="3")
    assert "ElementNumberOfChannels" in read_error(path)


def test_ndims_2_is_a_2d_image(tmp_path: Path) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(shape=(1, 5, 6)), NDims="2", DimSize="6 5",
                     ElementSpacing="0.7 0.8", Offset="0 0", TransformMatrix="1 0 0 1")
    assert "2D image" in read_error(path)


def test_single_slice_is_a_2d_image(tmp_path: Path) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(shape=(1, 5, 6)))
    message = read_error(path)
    assert "2D image" in message and "single-slice" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("element_type", ["MET_FLOAT", "MET_DOUBLE"])
def test_non_finite_voxels(tmp_path: Path, bad: float, element_type: str) -> None:
    voxels = hu_volume().astype(np.float64)
    voxels[2, 3, 4] = bad
    message = read_error(write_mhd(tmp_path / "ct.mhd", voxels, element_type))
    assert "NaN or inf" in message and "(2, 3, 4)" in message


@pytest.mark.parametrize(
    "element_type, value",
    [("MET_USHORT", 40000), ("MET_INT", -40000), ("MET_FLOAT", 1e6), ("MET_UINT", 2**31)],
)
def test_values_outside_int16(tmp_path: Path, element_type: str, value: float) -> None:
    voxels = hu_volume().astype(np.float64).clip(0)
    voxels[1, 1, 1] = value
    message = read_error(write_mhd(tmp_path / "ct.mhd", voxels, element_type))
    assert "outside the int16 range" in message and str(int(value)) in message


@pytest.mark.parametrize(
    "key", ["NDims", "DimSize", "ElementType", "ElementSpacing", "Offset", "TransformMatrix"]
)
def test_missing_header_key(tmp_path: Path, key: str) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(), **{key: None})
    message = read_error(path)
    assert "missing header key" in message and key in message


def test_missing_element_data_file_key(tmp_path: Path) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume())
    path.write_text("\n".join(line for line in path.read_text().splitlines() if "ElementDataFile" not in line))
    message = read_error(path)
    assert "missing header key ElementDataFile" in message


def test_header_synonyms_are_accepted(tmp_path: Path) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(), Offset=None, Position=" ".join(map(str, ORIGIN)),
                     TransformMatrix=None, Rotation=" ".join(repr(float(v)) for v in DIRECTION.T.ravel()))
    assert_matches_sitk(path)


@pytest.mark.parametrize(
    "key, value, expect",
    [
        ("DimSize", "6 5", "expected 3 values"),
        ("DimSize", "6 5 four", "expected 3 int values"),
        ("DimSize", "6 0 4", "sizes must be positive"),
        ("NDims", "three", "NDims"),
        ("ElementSpacing", "0.7 0.8", "expected 3 values"),
        ("ElementSpacing", "0.7 -0.8 2.5", "must be positive"),
        ("Offset", "1 2 nan", "finite"),
        ("TransformMatrix", "1 0 0 0 1 0 0 0", "expected 9 values"),
        ("TransformMatrix", "1 0 0 1 0 0 0 0 1", "singular"),
        ("CompressedData", "maybe", "expected True or False"),
        ("BinaryDataByteOrderMSB", "yes", "expected True or False"),
        ("ElementDataFile", "LIST", "unsupported ElementDataFile"),
        ("ElementDataFile", "LIST 2D", "unsupported ElementDataFile"),
        ("BinaryData", "False", "ASCII"),
        ("ObjectType", "Mesh", "not an image"),
        ("ElementByteOrderMSB", "True", "disagree"),
    ],
)
def test_malformed_header_key(tmp_path: Path, key: str, value: str, expect: str) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(), **{key: value})
    message = read_error(path)
    assert expect in message and key in message


def test_malformed_header_line(tmp_path: Path) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume())
    path.write_text("NDims 3\n" + path.read_text())
    message = read_error(path)
    assert "malformed header line 1" in message and "NDims 3" in message


def test_binary_file_named_mhd(tmp_path: Path) -> None:
    path = tmp_path / "ct.mhd"
    path.write_bytes(bytes(range(256)) * 4)
    message = read_error(path)
    assert "not a MetaImage header" in message or "malformed header line" in message


# ---------------------------------------------------------------------------- hostile headers


def _hostile(tmp_path: Path, data_file: str, **edits: str) -> Path:
    """A header in ``tmp_path/data/sub`` naming ``data_file``, next to a good CT of the same size."""
    folder = tmp_path / "data" / "sub"
    folder.mkdir(parents=True)
    voxels = hu_volume()
    (tmp_path / "secret.raw").write_bytes(voxels.tobytes())  # outside: the right size to be read
    return write_mhd(folder / "ct.mhd", voxels, ElementDataFile=data_file, **edits)


@pytest.mark.parametrize("name", ["../../secret.raw", "../sub/../../secret.raw", "ABSOLUTE", ".."])
def test_data_file_outside_the_header_folder_is_refused(tmp_path: Path, name: str) -> None:
    name = str(tmp_path / "secret.raw") if name == "ABSOLUTE" else name
    path = _hostile(tmp_path, name)
    message = read_error(path)
    assert "outside the header's folder" in message and str(path.parent) in message
    if name != "..":
        assert str(tmp_path / "secret.raw") in message  # both paths named
    with pytest.raises(CTReadError):
        parse_header(path)


def test_header_size_minus_one_is_refused(tmp_path: Path) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(), HeaderSize="-1")
    message = read_error(path)
    assert "HeaderSize = -1" in message and str(path.with_suffix(".raw")) in message


def test_escape_with_header_size_minus_one_is_refused(tmp_path: Path) -> None:
    message = read_error(_hostile(tmp_path, "../../secret.raw", HeaderSize="-1"))
    assert "outside the header's folder" in message


def test_data_file_below_the_header_folder_is_read(tmp_path: Path) -> None:
    voxels = hu_volume()
    path = write_mhd(tmp_path / "ct.mhd", voxels)
    (tmp_path / "raw").mkdir()
    path.with_suffix(".raw").rename(tmp_path / "raw" / "ct.raw")
    text = path.read_text().replace("ElementDataFile = ct.raw", "ElementDataFile = raw/../raw/ct.raw")
    path.write_text(text)
    np.testing.assert_array_equal(read_ct(path).hu, voxels)


@pytest.mark.parametrize("dims", ["4294967296 4294967296 2", "65536 65536 65536", "100000 100000 300"])
def test_oversized_dimsize_is_a_read_error(tmp_path: Path, dims: str) -> None:
    path = write_mhd(tmp_path / "ct.mhd", hu_volume(), DimSize=dims)
    message = read_error(path)
    assert "DimSize" in message and "voxels, more than a CT can have" in message
