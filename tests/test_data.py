"""The HDF5 demo format: round trip, and one clear error for every kind of bad file."""
import h5py
import numpy as np
import pytest

from lpds_ros.data.hdf5 import DatasetError, DemoWriter, load_demos

LAYOUT = {"robot0_eef_pos": 3, "object_pos": 3, "robot0_gripper_width": 1}


def _episode(rng, T):
    return dict(obs=rng.normal(size=(T, 7)).astype(np.float32), actions=rng.uniform(-1, 1, (T, 4)).astype(np.float32),
                rewards=np.r_[np.zeros(T - 1), 1.0].astype(np.float32), dones=np.r_[np.zeros(T - 1, bool), True], success=True)


def _write(path, n=3, **kw):
    rng = np.random.default_rng(0)
    eps = [_episode(rng, 5 + i) for i in range(n)]
    with DemoWriter(path, LAYOUT, {"task": "franka-lift", "kwargs": {}}, **kw) as w:
        for ep in eps:
            w.add_episode(**ep)
    return eps


def test_round_trip_keeps_every_array_and_the_layout(tmp_path):
    path = tmp_path / "demos.hdf5"
    written = _write(path)
    demos = load_demos(path)
    assert demos.obs_layout == LAYOUT and demos.env_meta["task"] == "franka-lift"
    assert len(demos.episodes) == 3 and demos.num_samples == 5 + 6 + 7
    for ep, ref in zip(demos.episodes, written):
        np.testing.assert_array_equal(ep.obs, ref["obs"])
        np.testing.assert_array_equal(ep.actions, ref["actions"])
        np.testing.assert_array_equal(ep.dones, ref["dones"])
    with h5py.File(path) as f:  # the robomimic layout: one dataset per obs key
        assert f["data/demo_1/obs/object_pos"].shape == (6, 3)
        assert f["data"].attrs["total"] == 18
    assert len(load_demos(path, max_demos=2).episodes) == 2


def test_existing_file_is_not_overwritten_by_accident(tmp_path):
    path = tmp_path / "demos.hdf5"
    _write(path)
    with pytest.raises(DatasetError, match="already exists"):
        _write(path)
    _write(path, n=1, overwrite=True)
    assert len(load_demos(path).episodes) == 1


def test_interrupted_writer_publishes_what_it_recorded(tmp_path):
    path = tmp_path / "demos.hdf5"
    rng = np.random.default_rng(1)
    with pytest.raises(KeyboardInterrupt):
        with DemoWriter(path, LAYOUT, {"task": "t"}) as w:
            w.add_episode(**_episode(rng, 4))
            raise KeyboardInterrupt
    assert len(load_demos(path).episodes) == 1
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "missing_key", "bad_shape", "nan"])
def test_bad_files_fail_with_one_clear_line(tmp_path, damage):
    path = tmp_path / "demos.hdf5"
    _write(path)
    if damage == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not hdf5" * 100)
    elif damage == "empty":
        with h5py.File(path, "w") as f:
            f.create_group("data")
    else:
        with h5py.File(path, "r+") as f:
            if damage == "missing_key":
                del f["data/demo_0/obs/object_pos"]
            elif damage == "bad_shape":
                del f["data/demo_0/actions"]
                f["data/demo_0/actions"] = np.zeros((2, 4), np.float32)
            else:
                f["data/demo_2/actions"][0, 0] = np.nan
    with pytest.raises(DatasetError) as info:
        load_demos(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_demos(tmp_path / "nope.hdf5")
