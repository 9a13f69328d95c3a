"""Conv layers: initialisation, calling, moving between backends, saving and loading."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import polyconv as pc
from polyconv import reference
from polyconv.backends import Backend, get
from polyconv.lesson import EDGE_KERNEL, band_image

LAYERS = {1: pc.Conv1D, 2: pc.Conv2D, 3: pc.Conv3D}


def _numpy(layer: pc.Conv2D, a: object) -> np.ndarray:
    return layer.backend.to_numpy(a)


def _multichannel_layer(backend: str, seed: int = 3) -> pc.Conv2D:
    return pc.Conv2D(
        (3, 2),
        in_channels=4,
        out_channels=6,
        stride=(2, 1),
        padding=((1, 0), (2, 1)),
        dilation=(1, 2),
        groups=2,
        padding_mode="reflect",
        backend=backend,
        seed=seed,
    )


# --- initialisation -------------------------------------------------------------------------


def test_same_seed_gives_bit_identical_initial_weights_on_every_backend(backend: Backend) -> None:
    ours, numpy_layer = _multichannel_layer(backend.name), _multichannel_layer("numpy")
    np.testing.assert_array_equal(_numpy(ours, ours.weight), numpy_layer.weight)
    np.testing.assert_array_equal(_numpy(ours, ours.bias), numpy_layer.bias)


def test_different_seeds_give_different_weights() -> None:
    assert not np.array_equal(pc.Conv2D(3, seed=0).weight, pc.Conv2D(3, seed=1).weight)


def test_single_channel_layer_starts_uniform_in_unit_interval_with_zero_bias() -> None:
    layer = pc.Conv2D((8, 8), seed=5)
    assert layer.weight.shape == (1, 1, 8, 8)
    assert layer.weight.min() >= 0 and layer.weight.max() < 1
    assert layer.weight.std() > 0.2  # spread over [0, 1), not a constant
    np.testing.assert_array_equal(layer.bias, np.zeros(1, dtype=np.float32))


def test_multichannel_weights_lie_within_the_fan_in_bound() -> None:
    layer = pc.Conv2D(3, in_channels=8, out_channels=16, groups=2, seed=0)
    bound = 1 / math.sqrt(8 // 2 * 9)
    assert np.abs(layer.weight).max() <= bound
    assert np.abs(layer.weight).max() > 0.9 * bound  # uses the whole range
    assert (layer.weight < 0).any()


def _parameter_holder(backend: Backend) -> Backend:
    """The backend whose arrays hold a layer's parameters: its own, but NumPy for a lazy
    backend (Dask keeps a layer's small parameters as NumPy arrays)."""
    return get("numpy") if backend.lazy else backend


def test_layer_parameters_have_the_layer_dtype(backend: Backend) -> None:
    layer = pc.Conv1D(3, in_channels=2, out_channels=2, backend=backend.name)
    assert backend.dtype_name(layer.weight) == "float32"
    assert backend.dtype_name(layer.bias) == "float32"
    held_by = _parameter_holder(backend)
    assert held_by.owns(layer.weight) and held_by.owns(layer.bias)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"kernel_size": 0}, "kernel_size"),
        ({"kernel_size": (1, 2, 3)}, "kernel_size"),
        ({"kernel_size": 2, "stride": 0}, "stride"),
        ({"kernel_size": 2, "dilation": (1, -1)}, "dilation"),
        ({"kernel_size": 2, "padding": "sme"}, "padding"),
        ({"kernel_size": 2, "padding": -1}, "padding"),
        ({"kernel_size": 2, "padding_mode": "wrap"}, "padding_mode"),
        ({"kernel_size": 2, "in_channels": 0}, "in_channels"),
        ({"kernel_size": 2, "in_channels": 3, "groups": 2}, "groups"),
        ({"kernel_size": 2, "dtype": "int32"}, "dtype"),
        ({"kernel_size": 2, "backend": "tensorflow"}, "backend"),
    ],
)
def test_invalid_constructor_arguments_are_refused_naming_the_argument(
    kwargs: dict[str, object], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        pc.Conv2D(**kwargs)  # type: ignore[arg-type]


def test_non_bool_bias_flag_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="bias"):
        pc.Conv2D(2, bias=1)  # type: ignore[arg-type]


# --- calling --------------------------------------------------------------------------------


def test_plain_input_gives_corr2d_plus_bias(backend: Backend) -> None:
    layer = pc.Conv2D((1, 2), backend=backend.name)
    layer.weight = EDGE_KERNEL[None, None]
    layer.bias = [0.5]
    image = band_image()
    y = layer(image)
    assert tuple(y.shape) == (6, 7)
    expected = reference.correlate(image[None], EDGE_KERNEL[None, None])[0] + 0.5
    np.testing.assert_array_equal(_numpy(layer, y), expected)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_calling_a_layer_is_correlate_with_its_parameters(backend: Backend, rank: int) -> None:
    layer = LAYERS[rank](
        2, in_channels=2, out_channels=4, stride=2, padding="same", groups=2, backend=backend.name
    )
    layer.bias = [0.1, 0.2, 0.3, 0.4]
    x = np.random.default_rng(rank).uniform(-1, 1, (3, 2, *([5] * rank))).astype(np.float32)
    options = {k: v for k, v in layer.options.items() if k != "method"}
    expected = reference.correlate(
        x, _numpy(layer, layer.weight), _numpy(layer, layer.bias), **options
    )
    y = layer(x)
    assert backend.owns(y)
    np.testing.assert_allclose(_numpy(layer, y), expected, rtol=1e-5, atol=1e-6)


def test_unbatched_input_gives_unbatched_output() -> None:
    layer = pc.Conv2D(3, in_channels=2, out_channels=5)
    assert layer(np.ones((2, 7, 7), dtype=np.float32)).shape == (5, 5, 5)


def test_plain_input_is_refused_by_a_multichannel_layer() -> None:
    with pytest.raises(ValueError, match="x must have shape"):
        pc.Conv2D(3, in_channels=2)(np.ones((7, 7)))


def test_weight_setter_refuses_a_wrong_shape() -> None:
    layer = pc.Conv2D((1, 2))
    with pytest.raises(ValueError, match=r"weight must have shape \(1, 1, 1, 2\)"):
        layer.weight = [[1.0, -1.0]]


def test_bias_of_a_layer_without_bias_cannot_be_set() -> None:
    layer = pc.Conv2D(2, bias=False)
    assert layer.bias is None
    with pytest.raises(ValueError, match="bias=False"):
        layer.bias = [0.0]


# --- moving and saving ----------------------------------------------------------------------


def test_to_moves_parameters_bit_for_bit_and_leaves_the_original(
    backend_pair: tuple[Backend, Backend],
) -> None:
    source, target = backend_pair
    layer = _multichannel_layer(source.name)
    moved = layer.to(target.name)
    assert moved.backend is target and layer.backend is source
    assert _parameter_holder(target).owns(moved.weight)
    np.testing.assert_array_equal(target.to_numpy(moved.weight), source.to_numpy(layer.weight))
    np.testing.assert_array_equal(target.to_numpy(moved.bias), source.to_numpy(layer.bias))
    assert moved.config == layer.config


def test_saved_layer_loads_on_another_backend_with_identical_parameters_and_outputs(
    backend_pair: tuple[Backend, Backend], tmp_path: os.PathLike[str]
) -> None:
    source, target = backend_pair
    trained = _multichannel_layer(source.name, seed=7)
    trained.bias = [0.25, -0.5, 1.0, 2.0, -3.0, 0.125]
    path = os.path.join(tmp_path, "layer.npz")
    trained.save(path)

    loaded = _multichannel_layer(target.name, seed=0).load(path)
    np.testing.assert_array_equal(target.to_numpy(loaded.weight), source.to_numpy(trained.weight))
    np.testing.assert_array_equal(target.to_numpy(loaded.bias), source.to_numpy(trained.bias))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 4, 6, 7)).astype(np.float32)
    np.testing.assert_allclose(
        target.to_numpy(loaded(x)), source.to_numpy(trained(x)), rtol=1e-5, atol=1e-6
    )


def test_from_file_rebuilds_the_saved_layer(tmp_path: os.PathLike[str]) -> None:
    layer = pc.Conv3D((1, 2, 3), in_channels=2, out_channels=2, padding="full", bias=False)
    path = os.path.join(tmp_path, "layer.npz")
    layer.save(path)
    rebuilt = pc.Conv3D.from_file(path)
    assert rebuilt.config == layer.config
    np.testing.assert_array_equal(rebuilt.weight, layer.weight)


def test_from_file_refuses_a_file_of_another_layer_class(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "layer.npz")
    pc.Conv1D(3).save(path)
    with pytest.raises(ValueError, match="Conv1D"):
        pc.Conv2D.from_file(path)


def test_save_writes_exactly_the_given_path_and_no_temporary_files(
    tmp_path: os.PathLike[str],
) -> None:
    path = os.path.join(tmp_path, "weights")  # no .npz suffix: NumPy would append one
    pc.Conv2D(2).save(path)
    assert os.listdir(tmp_path) == ["weights"]


def test_a_failed_save_leaves_the_previous_file_intact(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = os.path.join(tmp_path, "layer.npz")
    original = pc.Conv2D(2, seed=1)
    original.save(path)

    def crash(file: object, **arrays: object) -> None:
        file.write(b"half a file")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        pc.Conv2D(2, seed=2).save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["layer.npz"]
    np.testing.assert_array_equal(pc.Conv2D(2, seed=9).load(path).weight, original.weight)


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Sets the process umask for the test, and restores it after."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002], ids=oct)
def test_save_creates_a_file_with_the_mode_open_would_give_it(
    tmp_path: os.PathLike[str], umask: Callable[[int], None], mask: int
) -> None:
    umask(mask)
    path, plain = os.path.join(tmp_path, "layer.npz"), os.path.join(tmp_path, "plain")
    pc.Conv1D(3).save(path)
    with open(plain, "wb"):
        pass
    assert stat.S_IMODE(os.stat(path).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "layer.npz")
    pc.Conv1D(3).save(path)
    os.chmod(path, 0o640)
    pc.Conv1D(3, seed=1).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_save_through_a_symlink_writes_its_target_and_keeps_the_link(
    tmp_path: os.PathLike[str],
) -> None:
    target, link = os.path.join(tmp_path, "target.npz"), os.path.join(tmp_path, "link.npz")
    pc.Conv1D(3).save(target)
    os.symlink(target, link)
    layer = pc.Conv1D(3, seed=4)
    layer.save(link)
    assert os.path.islink(link)
    np.testing.assert_array_equal(pc.Conv1D.from_file(target).weight, layer.weight)


def test_a_save_that_cannot_write_names_the_users_path(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "no", "such", "dir", "layer.npz")
    with pytest.raises(FileNotFoundError) as raised:
        pc.Conv1D(3).save(path)
    assert raised.value.filename == path
    assert ".tmp" not in str(raised.value) and path in str(raised.value)


def test_a_save_onto_a_directory_names_the_users_path(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "folder")
    os.mkdir(path)
    with pytest.raises(IsADirectoryError) as raised:
        pc.Conv1D(3).save(path)
    assert raised.value.filename == path
    assert os.listdir(tmp_path) == ["folder"]


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        ([1, 2], "config must be a JSON object of the layer's fields, got list"),
        (5, "config must be a JSON object of the layer's fields, got int"),
        ({"kernel_size": "abc"}, "config field kernel_size must be an int"),
        ({"stride": {"a": 1}}, "config field stride must be an int"),
        ({"in_channels": None}, "config field in_channels must be an int"),
        ({"bias": "yes"}, "config field bias must be True or False"),
        ({"groups": 1.5}, "config field groups must be an int"),
        ({"dtype": 5}, "config field dtype must be one of"),
    ],
    ids=[
        "list",
        "number",
        "kernel-str",
        "stride-dict",
        "channels-none",
        "bias-str",
        "groups-float",
        "dtype-int",
    ],
)
def test_from_file_refuses_a_malformed_config_naming_file_and_field(
    tmp_path: os.PathLike[str], config: object, pattern: str
) -> None:
    path = os.path.join(tmp_path, "pickled-name-but-plain.npz")  # no claim of a pickle
    pc.Conv1D(3).save(path)
    with np.load(path) as data:
        entries = dict(data)
    saved = json.loads(str(entries["config"]))
    entries["config"] = np.array(
        json.dumps({**saved, **config} if isinstance(config, dict) else config)
    )
    np.savez(path, **entries)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {pattern}")):
        pc.Conv1D.from_file(path)


def test_a_file_that_is_not_an_npz_is_never_called_a_pickle(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "pickle.npz")
    with open(path, "wb") as file:
        file.write(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="is not a polyconv layer file") as raised:
        pc.Conv1D.from_file(path)
    assert "pickled objects" not in str(raised.value)


def test_load_refuses_pickled_data(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "evil.npz")
    np.savez(
        path, config=np.array({"layer": "Conv2D"}, dtype=object), weight=np.zeros((1, 1, 2, 2))
    )
    with pytest.raises(ValueError, match=r"evil\.npz.*pickle"):
        pc.Conv2D(2).load(path)


def test_load_refuses_a_file_that_is_not_a_layer(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "array.npy")
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match=r"array\.npy is not a polyconv layer file"):
        pc.Conv2D(2).load(path)


def test_load_refuses_a_layer_of_another_shape_naming_file_and_field(
    tmp_path: os.PathLike[str],
) -> None:
    path = os.path.join(tmp_path, "small.npz")
    pc.Conv2D((1, 2)).save(path)
    with pytest.raises(
        ValueError, match=r"small\.npz: kernel_size is \[1, 2\] in the file but \[3, 3\]"
    ):
        pc.Conv2D(3).load(path)


def test_load_refuses_arrays_that_contradict_the_stored_config(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "tampered.npz")
    layer = pc.Conv2D((1, 2))
    layer.save(path)
    with np.load(path) as data:
        entries = dict(data)
    entries["weight"] = np.zeros((1, 1, 2, 2), dtype=np.float32)
    np.savez(path, **entries)
    with pytest.raises(ValueError, match=r"tampered\.npz: weight has shape \(1, 1, 2, 2\)"):
        layer.load(path)


def test_a_layer_computes_by_the_method_it_is_given(backend: Backend) -> None:
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 20, 20)).astype(np.float32)
    outputs = {}
    for method in ("direct", "fft"):
        layer = pc.Conv2D(7, in_channels=3, out_channels=2, padding="same", backend=backend.name,
                          method=method)  # fmt: skip
        assert layer.options["method"] == method and layer.to(backend.name).method == method
        outputs[method] = _numpy(layer, layer(x))
    np.testing.assert_allclose(outputs["fft"], outputs["direct"], rtol=1e-4, atol=1e-5)


def test_an_unknown_method_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"method must be one of \('auto', 'direct', 'fft'\)"):
        pc.Conv2D(3, method="winograd")
