"""Porting a three-layer PyTorch model to Flax by hand, and checking the port with polyconv.

The model is a small ResNet-style stem: a stride-2 convolution, a reflect-padded one and a
grouped, dilated one, with ReLUs between. The port copies each kernel into an ``nnx.Conv``
(transposed from torch's ``(C_out, C_in, kH, kW)`` to Flax's ``(kH, kW, C_in, C_out)``) and
first writes ``padding="SAME"`` everywhere, the classic mistake (google/flax issues 2993, 963):
at stride 2, "SAME" pads (0, 1), torch's ``padding=1`` pads (1, 1). ``pc.compare`` finds and
names it; the corrected port then agrees layer by layer, forward and backward, and the whole
model agrees too. Last, ``pc.from_module(...).to_module("flax")`` writes the same port
automatically.

    python examples/porting_a_model.py
"""

from __future__ import annotations

import argparse

import numpy as np

import polyconv as pc

INPUT_SHAPE = (2, 3, 16, 16)  # channels-first, as torch takes it


def torch_model() -> list[object]:
    import torch

    torch.manual_seed(0)
    return [
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
        torch.nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),
        torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=False),
    ]


def port_by_hand(layers: list[object], first_padding: object) -> list[object]:
    """The Flax layers a person writes for ``layers``, weights copied and transposed by hand."""
    import jax.numpy as jnp
    from flax import nnx

    conv1, conv2, conv3 = layers
    ported = [
        nnx.Conv(3, 8, (3, 3), strides=2, padding=first_padding, rngs=nnx.Rngs(0)),
        # torch's reflect padding by 1 around a 3x3 kernel is Flax's "REFLECT".
        nnx.Conv(8, 8, (3, 3), padding="REFLECT", rngs=nnx.Rngs(0)),
        nnx.Conv(8, 8, (3, 3), padding=2, kernel_dilation=2, feature_group_count=2,
                 use_bias=False, rngs=nnx.Rngs(0)),
    ]  # fmt: skip
    for source, target in zip((conv1, conv2, conv3), ported, strict=True):
        weight = source.weight.detach().numpy()  # type: ignore[attr-defined]
        target.kernel.set_value(jnp.asarray(weight.transpose(2, 3, 1, 0)))
        if source.bias is not None:  # type: ignore[attr-defined]
            target.bias.set_value(jnp.asarray(source.bias.detach().numpy()))  # type: ignore[attr-defined]
    return ported


def layer_inputs() -> list[tuple[int, ...]]:
    """The channels-first input shape each layer sees in the model."""
    n, _, h, w = INPUT_SHAPE
    return [INPUT_SHAPE, (n, 8, h // 2, w // 2), (n, 8, h // 2, w // 2)]


def check_layers(title: str, originals: list[object], ports: list[object]) -> bool:
    print(f"== {title}")
    all_ok = True
    for index, (original, port, shape) in enumerate(
        zip(originals, ports, layer_inputs(), strict=True), start=1
    ):
        report = pc.compare(original, port, shape)
        all_ok &= report.ok
        print(f"layer {index}: {'ok' if report.ok else 'FAIL'}")
        for difference in report.differences:
            print(f"  {difference}")
    return all_ok


def run_torch(layers: list[object], x: np.ndarray) -> np.ndarray:
    import torch

    h = torch.from_numpy(x)
    with torch.no_grad():
        for index, layer in enumerate(layers):
            h = layer(h)  # type: ignore[operator]
            if index < len(layers) - 1:
                h = torch.relu(h)
    return h.numpy()


def run_flax(layers: list[object], x: np.ndarray) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    h = jnp.asarray(np.moveaxis(x, 1, -1))  # Flax takes channels-last
    for index, layer in enumerate(layers):
        h = layer(h)  # type: ignore[operator]
        if index < len(layers) - 1:
            h = jax.nn.relu(h)
    return np.moveaxis(np.asarray(h), -1, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    originals = torch_model()

    check_layers('ported by hand, padding="SAME" on the stride-2 layer', originals,
                 port_by_hand(originals, "SAME"))  # fmt: skip
    corrected = port_by_hand(originals, ((1, 1), (1, 1)))
    layers_ok = check_layers("ported by hand, padding=((1, 1), (1, 1))", originals, corrected)

    x = np.random.default_rng(0).uniform(-1, 1, INPUT_SHAPE).astype(np.float32)
    expected = run_torch(originals, x)
    difference = float(np.max(np.abs(run_flax(corrected, x) - expected)))
    automatic = [pc.from_module(layer).to_module("flax") for layer in originals]
    automatic_difference = float(np.max(np.abs(run_flax(automatic, x) - expected)))
    scale = float(np.max(np.abs(expected)))
    print("== the whole model, torch against Flax")
    print(f"by hand: max |difference| {difference:.2e} (outputs up to {scale:.2f})")
    print(f"pc.from_module(layer).to_module('flax'): max |difference| {automatic_difference:.2e}")
    print("corrected port: all three layers agree" if layers_ok else "corrected port: FAIL")
    return 0 if layers_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
