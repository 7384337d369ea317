"""ONNX ops the importer maps onto a cheap accelerator layer or onto a host op
(:mod:`programs.hostops`): a mixin of :class:`programs.onnx_import._Importer`.

* HardSigmoid ``clip(alpha x + beta, 0, 1)`` is linear then ReLU6-like: it folds into the
  convolution producing its input (weights times alpha, bias ``alpha b + beta``, Clip(0, 1)),
  or becomes a depthwise 1x1 convolution with that weight, bias and clip - on the accelerator.
* HardSwish ``x * HardSigmoid(x)`` (alpha 1/6, beta 1/2), as the ONNX op or written out as
  ``Mul(x, HardSigmoid(x))`` or ``Mul(x, Clip(x + 3, 0, 6))``, is a function of one input: a
  host table look-up, no product.
* Mul / Div by a constant (a scalar or one value a channel) is a per-channel scale, Sub of a
  constant (either way round) a per-channel scale of +-1 and shift: folded into the
  producing convolution or a depthwise 1x1 convolution.  Mul of two feature maps (same
  shape, or one value a channel as in squeeze-excitation) runs on the host.
* Sigmoid runs on the host (a table of the int8 input); Resize with ``mode=nearest`` too (a
  gather; any scale, the source indices follow ONNX's coordinate transformation).
* ConvTranspose with stride ``s``: the host inserts ``s - 1`` zeros between input pixels (a
  gather with zero entries), then the accelerator runs a stride-1 convolution with the
  kernel flipped and its input and output channels swapped, padded ``k - 1 - pad`` (plus
  ``output_padding`` at the bottom and right).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .graph import Layer
from .hostops import HostOpError, nearest_indices

HOST_IMPORT_OPS = ("HardSigmoid", "HardSwish", "Mul", "Div", "Sub", "Sigmoid", "Resize",
                   "ConvTranspose")


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    out = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in out.items()}


class HostOpsImport:
    """``op_*`` handlers; relies on the importer's ``act_input``, ``const``, ``producer``,
    ``sole_reader``, ``add``, ``fail``, ``name``, ``consts`` and ``shapes``."""

    shapes: dict[str, Any]
    consts: dict[str, NDArray]
    layers: list[Layer]

    if TYPE_CHECKING:  # provided by the importer
        def act_input(self, node: Any, t: str) -> str: ...
        def const(self, node: Any, t: str, what: str, finite: bool = True) -> NDArray: ...
        def producer(self, t: str) -> Layer | None: ...
        def sole_reader(self, t: str) -> bool: ...
        def add(self, lay: Layer) -> None: ...
        def fail(self, node: Any, msg: str) -> Exception: ...
        def name(self, t: str) -> str: ...

    # Per-channel affine maps on the accelerator ----------------------------------------------
    def affine(self, node: Any, x: str, out: str, scale: NDArray, shift: NDArray,
               act: str = "none", hi: float = np.inf) -> None:
        """``out = act(scale * x + shift)`` per channel: folded into the convolution that
        produces ``x`` when nothing else reads it, else a depthwise 1x1 convolution."""
        c = self.shapes[x][0]
        scale = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (c,)).copy()
        shift = np.broadcast_to(np.asarray(shift, np.float64).reshape(-1), (c,)).copy()
        prod = self.producer(x)
        if (prod is not None and prod.op == "conv" and prod.act == "none"
                and self.sole_reader(x)):
            assert prod.weight is not None and prod.bias is not None
            prod.weight = prod.weight * scale[:, None, None, None]
            prod.bias = prod.bias * scale + shift
            prod.act, prod.act_hi = act, hi
            prod.output = out
            prod.onnx_nodes.append(node.name)
            self.shapes[out] = self.shapes.pop(x)
            return
        name = node.name or node.output[0]
        if out != node.output[0]:
            name += "/" + out.rsplit("#", 1)[-1]
        self.add(Layer(name, "conv", [x], out, [node.name],
                       weight=scale.reshape(c, 1, 1, 1), bias=shift, groups=c, act=act,
                       act_hi=hi))

    def _per_channel(self, node: Any, x: str, t: str, what: str) -> NDArray:
        v = self.const(node, t, what)
        c = self.shapes[x][0]
        if v.size not in (1, c) or (v.size == c and c > 1 and v.ndim >= 3
                                    and v.shape[-2:] != (1, 1)):
            raise self.fail(node, f"{what} of shape {v.shape}: only a scalar or one value "
                            "per channel is supported for a constant operand")
        return np.asarray(v, np.float64).reshape(-1)

    def _hardsigmoid(self, node: Any, x: str, out: str, alpha: float, beta: float) -> None:
        c = self.shapes[x][0]
        self.affine(node, x, out, np.full(c, alpha), np.full(c, beta), "clip", 1.0)

    def _hardswish_of(self, a: str, b: str) -> tuple[dict[str, float], list[str]] | None:
        """``alpha, beta, hi`` when ``b = clip(alpha a + beta, 0, hi)`` (the same for every
        channel) is a 1x1 depthwise layer of ``a`` that nothing else reads: ``a * b`` is then a
        function of ``a`` alone (a hard-swish: HardSigmoid gives ``hi = 1``, Paddle's
        ``relu6(x + 3)`` ``hi = 6``), and the gate layer is dropped."""
        lay = self.producer(b)
        if (lay is None or lay.op != "conv" or not lay.depthwise or lay.kernel != (1, 1)
                or lay.stride != (1, 1) or any(lay.pads) or lay.inputs != [a]
                or lay.act != "clip" or not self.sole_reader(b)):
            return None
        assert lay.weight is not None and lay.bias is not None
        w, c = lay.weight.reshape(-1), lay.bias
        if np.ptp(w) != 0 or np.ptp(c) != 0:
            return None
        self.layers.remove(lay)
        self.shapes.pop(b)
        return {"alpha": float(w[0]), "beta": float(c[0]), "hi": lay.act_hi}, lay.onnx_nodes

    def op_HardSigmoid(self, node: Any) -> None:  # noqa: N802
        a = _attrs(node)
        x = self.act_input(node, node.input[0])
        self._hardsigmoid(node, x, node.output[0], float(a.get("alpha", 0.2)),
                          float(a.get("beta", 0.5)))

    def op_HardSwish(self, node: Any) -> None:  # noqa: N802
        x = self.act_input(node, node.input[0])
        self.add(Layer(node.name or node.output[0], "hardswish", [x], node.output[0],
                       [node.name], params={"alpha": 1 / 6, "beta": 0.5, "hi": 1.0}))

    # Products --------------------------------------------------------------------------------
    def op_Mul(self, node: Any) -> None:  # noqa: N802
        ins = [self.name(t) for t in node.input]
        consts = [t for t in ins if t in self.consts]
        if len(consts) == 2:
            raise self.fail(node, "both inputs constant (nothing to compute)")
        if consts:
            x = self.act_input(node, ins[1] if ins[0] in consts else ins[0])
            k = self._per_channel(node, x, consts[0], "factor")
            self.affine(node, x, node.output[0], k, np.zeros(k.size))
            return
        a, b = (self.act_input(node, t) for t in ins)
        for x, gate in ((a, b), (b, a)):
            found = self._hardswish_of(x, gate)
            if found is not None:
                self.add(Layer(node.name or node.output[0], "hardswish", [x], node.output[0],
                               [*found[1], node.name], params=found[0]))
                return
        sa, sb = self.shapes[a], self.shapes[b]
        if sa != sb and sa == (sb[0], 1, 1):
            a, b = b, a  # the per-channel factor second
            sa, sb = sb, sa
        if sb not in (sa, (sa[0], 1, 1)):
            raise self.fail(node, f"feature maps of shapes {sa} and {sb}: supported are equal "
                            "shapes or one value per channel (squeeze-excitation)")
        self.add(Layer(node.name or node.output[0], "mul", [a, b],
                       node.output[0], [node.name]))

    def op_Div(self, node: Any) -> None:  # noqa: N802
        x = self.act_input(node, node.input[0])
        if self.name(node.input[1]) not in self.consts:
            raise self.fail(node, "division by a feature map is not supported; nearest "
                            "supported: Div by a constant, or Mul of two feature maps")
        k = self._per_channel(node, x, node.input[1], "divisor")
        if np.any(k == 0):
            raise self.fail(node, "divisor: expected non-zero values, found 0")
        self.affine(node, x, node.output[0], 1.0 / k, np.zeros(k.size))

    def op_Sub(self, node: Any) -> None:  # noqa: N802
        ins = [self.name(t) for t in node.input]
        consts = [t in self.consts for t in ins]
        if consts.count(True) != 1:
            raise self.fail(node, "only a constant subtracted from a feature map (or a feature "
                            "map from a constant) is supported; nearest supported: Add")
        x = self.act_input(node, ins[consts.index(False)])
        k = self._per_channel(node, x, ins[consts.index(True)], "constant")
        sign = 1.0 if consts[1] else -1.0  # x - k, or k - x
        self.affine(node, x, node.output[0], np.full(k.size, sign), -sign * k)

    # Host ops --------------------------------------------------------------------------------
    def op_Sigmoid(self, node: Any) -> None:  # noqa: N802
        x = self.act_input(node, node.input[0])
        self.add(Layer(node.name or node.output[0], "sigmoid", [x],
                       node.output[0], [node.name]))

    def op_Resize(self, node: Any) -> None:  # noqa: N802
        a = _attrs(node)
        x = self.act_input(node, node.input[0])
        mode = a.get("mode", "nearest")
        if mode != "nearest":
            raise self.fail(node, f"mode '{mode}' is not supported; nearest supported: "
                            "Resize mode=nearest")
        for key, ok in (("antialias", 0), ("exclude_outside", 0)):
            if int(a.get(key, ok)) != ok:
                raise self.fail(node, f"{key}={a[key]} is not supported")
        if a.get("axes") is not None or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise self.fail(node, "axes / keep_aspect_ratio_policy are not supported "
                            "(give scales or sizes for all four axes)")
        c, h, w = self.shapes[x]

        def given(i: int, what: str) -> NDArray | None:
            if len(node.input) <= i or not node.input[i]:
                return None
            v = self.const(node, node.input[i], what).reshape(-1)
            return v if v.size else None

        scales, sizes = given(2, "scales"), given(3, "sizes")
        if sizes is not None:
            if sizes.size != 4 or int(sizes[1]) != c:
                raise self.fail(node, f"sizes {sizes.tolist()}: expected N, {c}, H, W")
            out_hw = (int(sizes[2]), int(sizes[3]))
            sc = (out_hw[0] / h, out_hw[1] / w)
        elif scales is not None:
            if scales.size != 4 or scales[0] != 1 or scales[1] != 1:
                raise self.fail(node, f"scales {scales.tolist()}: only H and W may be "
                                "scaled (expected 1, 1, sh, sw)")
            sc = (float(scales[2]), float(scales[3]))
            out_hw = (int(np.floor(h * sc[0])), int(np.floor(w * sc[1])))
        else:
            raise self.fail(node, "neither scales nor sizes given")
        if min(out_hw) < 1 or min(sc) <= 0:
            raise self.fail(node, f"output size {out_hw}: expected at least 1x1")
        coord = a.get("coordinate_transformation_mode", "half_pixel")
        rounding = a.get("nearest_mode", "round_prefer_floor")
        try:
            rows = nearest_indices(h, out_hw[0], sc[0], coord, rounding)
            cols = nearest_indices(w, out_hw[1], sc[1], coord, rounding)
        except HostOpError as exc:
            raise self.fail(node, str(exc)) from None
        self.add(Layer(node.name or node.output[0], "resize", [x],
                       node.output[0], [node.name], params={"rows": rows, "cols": cols}))

    def op_ConvTranspose(self, node: Any) -> None:  # noqa: N802
        a = _attrs(node)
        x = self.act_input(node, node.input[0])
        w = self.const(node, node.input[1], "weight")
        c, h, wd = self.shapes[x]
        if w.ndim != 4 or w.shape[0] != c:
            raise self.fail(node, f"weight of shape {w.shape}: expected ({c}, Co/group, kH, kW)")
        for key in ("output_shape", "auto_pad"):
            if key in a and not (key == "auto_pad" and a[key] == "NOTSET"):
                raise self.fail(node, f"{key} is not supported; give pads and output_padding")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(node, f"dilations {list(a['dilations'])}: only 1 is supported")
        g = int(a.get("group", 1))
        kh, kw = int(w.shape[2]), int(w.shape[3])
        sy, sx = (int(v) for v in a.get("strides", [1, 1]))
        t, l, b, r = (int(v) for v in a.get("pads", [0, 0, 0, 0]))
        oy, ox = (int(v) for v in a.get("output_padding", [0, 0]))
        pads = (kh - 1 - t, kw - 1 - l, kh - 1 - b + oy, kw - 1 - r + ox)
        if min(pads) < 0 or min(sy, sx) < 1 or c % g:
            raise self.fail(node, f"pads {[t, l, b, r]} with a {kh}x{kw} kernel, strides "
                            f"{[sy, sx]}, group {g}: supported are pads <= kernel - 1")
        cig, cog = c // g, int(w.shape[1])
        # (Ci, Co/g, kh, kw) per group -> (Co/g, Ci/g, kh, kw), flipped in space.
        weight = np.concatenate([w[i * cig:(i + 1) * cig].transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
                                 for i in range(g)], axis=0)
        bias = (self.const(node, node.input[2], "bias") if len(node.input) > 2
                and node.input[2] else np.zeros(cog * g))
        src, name = x, node.name or node.output[0]
        if (sy, sx) != (1, 1):
            src = node.output[0] + "#zeros"
            rows = [i // sy if i % sy == 0 else -1 for i in range((h - 1) * sy + 1)]
            cols = [i // sx if i % sx == 0 else -1 for i in range((wd - 1) * sx + 1)]
            self.add(Layer(name + "/zeros", "resize", [x], src, [node.name],
                           params={"rows": rows, "cols": cols}))
        self.add(Layer(name, "conv", [src], node.output[0], [node.name],
                       weight=np.ascontiguousarray(weight, np.float64),
                       bias=np.asarray(bias, np.float64).copy(), kernel=(kh, kw),
                       pads=pads, groups=g))
