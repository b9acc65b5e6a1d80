"""stacklab.smlm.config: cameras and channels, validation, serialisation, smlmLP pixel forms."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stacklab.errors import ShapeError
from stacklab.smlm.config import CameraConfig, ChannelConfig, Config, channel_pixel_sizes


def two_camera_config() -> Config:
    offset = np.full((32, 64), 100.0)
    offset[:, 32:] = 98.5
    return Config(
        cameras=(
            CameraConfig(
                "scmos",
                gain=0.25,
                offset=offset,
                qe=0.82,
                read_noise=1.6,
                exposure_s=0.03,
                variance=np.full((32, 64), 2.5),
            ),
            CameraConfig("emccd", gain=0.05, offset=500.0, qe=0.95, exposure_s=0.03),
        ),
        channels=(
            ChannelConfig("red", "scmos", 108.0, roi=(0, 0, 32, 32), wavelength_nm=670),
            ChannelConfig("green", "scmos", (108.0, 110.0), roi=(0, 32, 32, 32)),
            ChannelConfig("far", "emccd", 160.0, psf_sigma_nm=150.0),
        ),
    )


def test_single_and_accessors():
    cfg = Config.single(pixel_size_nm=100.0, gain=0.25, offset=100.0, qe=0.9, exposure_s=0.05)
    assert cfg.pixel_sizes() == [(100.0, 100.0)]
    cam = cfg.camera_of(0)
    assert cam.gain == 0.25 and cam.offset == 100.0 and cam.exposure_s == 0.05
    assert cam.photons_per_adu == pytest.approx(0.25 / 0.9)
    assert not cam.has_maps
    assert cfg.channel("channel0") is cfg.channel(0) is cfg.channel(-1)
    with pytest.raises(KeyError, match="no channel"):
        cfg.channel("blue")
    with pytest.raises(IndexError):
        cfg.channel(1)


def test_multi_camera_lookup_and_maps():
    cfg = two_camera_config()
    assert cfg.camera_of("green").name == "scmos" and cfg.camera_of(2).name == "emccd"
    assert cfg.pixel_sizes() == [(108.0, 108.0), (108.0, 110.0), (160.0, 160.0)]
    cam = cfg.camera_of("red")
    assert cam.shape == (32, 64) and cam.has_maps
    assert not cam.offset.flags.writeable  # maps are frozen copies


def test_to_camera_crops_maps():
    camera_mod = pytest.importorskip("stacklab.smlm.camera")
    cfg = two_camera_config()
    cam = cfg.to_camera("red")
    assert isinstance(cam, camera_mod.Camera)
    assert cam.pixel_size_nm == 108.0 and cam.gain == 0.25 and cam.qe == 0.82
    assert np.shape(cam.offset) == (32, 32) and np.all(np.asarray(cam.offset) == 100.0)
    assert np.shape(cam.variance) == (32, 32)
    far = cfg.to_camera("far")
    assert far.offset == 500.0 and far.pixel_size_nm == 160.0
    with pytest.raises(ValueError, match="non-square"):
        cfg.to_camera("green")


def test_caller_arrays_not_aliased():
    offset = np.full((4, 4), 100.0)
    cam = CameraConfig(offset=offset)
    offset[0, 0] = 0.0
    assert cam.offset[0, 0] == 100.0


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"gain": 0.0}, ValueError, "camera.gain must be > 0"),
        ({"gain": "0.25"}, TypeError, "camera.gain"),
        ({"qe": 1.2}, ValueError, r"camera.qe must be in \(0, 1\]"),
        ({"read_noise": -1.0}, ValueError, "read_noise"),
        ({"exposure_s": 0.0}, ValueError, "exposure_s"),
        ({"offset": float("nan")}, ValueError, "offset must be finite"),
        ({"offset": np.zeros(5)}, ShapeError, "offset"),
        ({"variance": -np.ones((2, 2))}, ValueError, "variance must be >= 0"),
        ({"offset": np.zeros((3, 3)), "shape": (4, 4)}, ShapeError, "chip is"),
        ({"name": ""}, ValueError, "name"),
    ],
)
def test_camera_validation(kwargs, err, match):
    with pytest.raises(err, match=match):
        CameraConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"pixel_size_nm": 0.0}, ValueError, "pixel_size_nm must be > 0"),
        ({"pixel_size_nm": (100.0, 110.0, 120.0)}, ValueError, "pair"),
        ({"pixel_size_nm": "100"}, TypeError, "pixel_size_nm"),
        ({"roi": (0, 0, 0, 5)}, ValueError, "roi"),
        ({"roi": (0, 0, 5)}, ValueError, "roi"),
        ({"wavelength_nm": -670}, ValueError, "wavelength_nm"),
        ({"camera": ""}, ValueError, "camera"),
    ],
)
def test_channel_validation(kwargs, err, match):
    with pytest.raises(err, match=match):
        ChannelConfig(**kwargs)


def test_config_validation():
    with pytest.raises(ValueError, match="not one of the cameras"):
        Config((CameraConfig("a"),), (ChannelConfig(camera="b"),))
    with pytest.raises(ValueError, match="unique"):
        Config((CameraConfig("a"), CameraConfig("a")), (ChannelConfig(camera="a"),))
    with pytest.raises(ValueError, match="does not fit"):
        Config((CameraConfig(shape=(10, 10)),), (ChannelConfig(roi=(5, 5, 6, 5)),))
    with pytest.raises(ValueError, match="at least one"):
        Config((), (ChannelConfig(),))
    with pytest.raises(TypeError, match="CameraConfig"):
        Config(({"name": "camera"},), (ChannelConfig(),))


def test_dict_and_json_round_trip(tmp_path):
    cfg = two_camera_config()
    d = cfg.to_dict()
    json.dumps(d)  # plain values only
    assert Config.from_dict(d) == cfg
    assert Config.from_json(cfg.to_json()) == cfg
    cfg.save(tmp_path / "cfg.json")
    assert Config.load(tmp_path / "cfg.json") == cfg
    assert Config.from_dict(d).camera_of(0).offset.shape == (32, 64)


def test_yaml_round_trip(tmp_path):
    cfg = Config(
        cameras=(CameraConfig("cam", gain=0.25, offset=100.0, qe=0.82, read_noise=1.6),),
        channels=(
            ChannelConfig("a", "cam", (100.0, 110.0), roi=(0, 0, 32, 32), wavelength_nm=670.0),
            ChannelConfig("b", "cam", 100.0),
        ),
    )
    text = cfg.to_yaml()
    assert "kind: camera" in text and text.count("---") == 2
    assert Config.from_yaml(text) == cfg
    cfg.save(tmp_path / "cfg.yaml")
    assert Config.load(tmp_path / "cfg.yaml") == cfg
    yaml = pytest.importorskip("yaml")
    docs = list(yaml.safe_load_all(text))
    assert docs[1]["pixel_size_nm"] == [100.0, 110.0] and docs[0]["gain"] == 0.25


def test_handwritten_yaml():
    text = """\
kind: camera
name: zyla
gain: 0.46
offset: 100
qe: 0.82
exposure_s: 0.02
---
kind: channel
name: ch0
camera: zyla
pixel_size_nm: 130
"""
    cfg = Config.from_yaml(text)
    assert cfg.camera_of(0).gain == 0.46 and cfg.camera_of(0).offset == 100.0
    assert cfg.pixel_sizes() == [(130.0, 130.0)]


def test_serialisation_errors(tmp_path):
    with pytest.raises(ValueError, match="per-pixel maps"):
        two_camera_config().to_yaml()
    with pytest.raises(ValueError, match="unknown keys"):
        Config.from_dict({"cameras": [{"name": "c", "gian": 1.0}], "channels": [{}]})
    with pytest.raises(ValueError, match="unknown config keys"):
        Config.from_dict({"cameras": [], "lasers": []})
    with pytest.raises(ValueError, match=r"cameras\[0\].gain"):
        Config.from_dict({"cameras": [{"gain": -1}], "channels": [{}]})
    with pytest.raises(ValueError, match="kind"):
        Config.from_yaml("name: c\n")
    with pytest.raises(ValueError, match="malformed"):
        Config.from_json("{")
    with pytest.raises(ValueError, match=r"\.json or \.yaml"):
        Config.single().save(tmp_path / "cfg.txt")


def test_replace_camera():
    cfg = Config.single(gain=0.25)
    new = cfg.replace_camera("camera", gain=0.5)
    assert new.camera_of(0).gain == 0.5 and cfg.camera_of(0).gain == 0.25
    with pytest.raises(KeyError):
        cfg.replace_camera("other", gain=1.0)
    with pytest.raises(ValueError, match="gain"):
        cfg.replace_camera("camera", gain=-1.0)


def test_channel_pixel_sizes_smlmlp_forms():
    assert channel_pixel_sizes(100.0, 1) == [(100.0, 100.0)]
    assert channel_pixel_sizes((100.0, 110.0), 3) == [(100.0, 110.0)] * 3
    assert channel_pixel_sizes([100.0, 110.0], 2) == [(100.0, 100.0), (110.0, 110.0)]
    assert channel_pixel_sizes([(100, 100), (110, 120)], 2) == [(100.0, 100.0), (110.0, 120.0)]
    assert channel_pixel_sizes(np.array([100.0, 105.0, 110.0]), 3)[2] == (110.0, 110.0)
    with pytest.raises(ValueError, match="one entry per channel"):
        channel_pixel_sizes([100.0, 110.0, 120.0], 2)
    with pytest.raises(ValueError, match="> 0"):
        channel_pixel_sizes(-1.0, 1)
    with pytest.raises(ValueError, match="n_channels"):
        channel_pixel_sizes(100.0, 0)
