"""One registry of weight quantization schemes: name + options -> quantizer.

Every quantizer maps a weight tensor to ``scale * v`` and returns, in a :class:`QuantResult`,
the dequantized float32 tensor, the integer codes, the scales (float16 values, one per tensor
or one per output channel) and the bit accounting.  Names (see :func:`available`):

=============  ==============================================  ================================
name           what                                            options (defaults)
=============  ==============================================  ================================
asd            K signed digits in a window of 2**E positions   digits=2, exp_bits=3,
                                                               conversion="nearest" | "csd"
asd2           asd with digits=2, exp_bits=3 (the headline)
pot            one-digit power of two (INQ / LogQuant)         exp_bits=3
int            uniform symmetric integers                      bits=8
int8/7/6/4     int with that many bits
shiftcnn       greedy sum of N power-of-two terms              terms=2, exp_bits=3
fp             minifloat                                       format="e4m3" (or e5m2, eXmY)
fp8-e4m3/-e5m2 fp with that format
=============  ==============================================  ================================

The compiler and ``asd eval`` resolve schemes only through :func:`get_scheme`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from asd import packing, scale_formats, scales
from asd.asdq import AsdFormat, csd_round_int
from asd.baselines import IntFormat, ShiftCnnFormat, pot_format
from asd.minifloat import Minifloat, parse_format


@dataclass
class QuantResult:
    scheme: str
    options: dict[str, Any]
    dequant: NDArray[np.float32]  # same shape as the weights
    codes: NDArray[np.int64]  # same shape, unpacked
    scale: NDArray[np.float32]  # (channels,) or (1,)
    granularity: str
    channel_axis: int
    code_bits: int
    size: packing.SizeReport = field(repr=False)
    stored_scales: scale_formats.StoredScales | None = field(default=None, repr=False)

    def packed(self) -> NDArray[np.uint8]:
        return packing.pack(self.codes, self.code_bits)

    def scale_broadcast(self) -> NDArray[np.float32]:
        """Scales shaped to broadcast against the weight tensor."""
        if self.granularity == "tensor" or self.dequant.ndim == 0:
            return self.scale.reshape(())
        shape = [1] * self.dequant.ndim
        shape[self.channel_axis] = -1
        return self.scale.reshape(shape)


class Scheme:
    """Base: subclasses give ``code_bits``, ``vmax``, ``levels()``, ``_codes`` and ``decode``."""

    name = "?"
    code_bits = 0
    vmax = 1.0

    def __init__(self, **options: Any) -> None:
        self.options = options

    def spec(self) -> dict[str, Any]:
        return {"scheme": self.name, **self.options}

    def levels(self) -> NDArray[np.float64] | None:
        """Non-negative codebook values for the fast MSE search (None: brute force)."""
        return None

    def _codes(self, w2: NDArray, s: NDArray[np.float32]) -> NDArray[np.int64]:
        raise NotImplementedError

    def steps(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The unscaled quantizer on ``|x|`` as a step function: ``(thresholds, levels)``,
        ``levels[j]`` for ``j`` thresholds ``<= |x|`` (what :class:`asd.scales.Sweep` needs).
        A nearest-rounding codebook's thresholds are its midpoints; otherwise the changes of
        the quantizer are found on a fine grid and bisected to float64 precision."""
        cached = getattr(self, "_steps", None)
        if cached is not None:
            return cached
        lv = self.levels()
        if lv is not None:
            out = ((lv[:-1] + lv[1:]) / 2, np.asarray(lv, np.float64))
        else:
            one = np.ones(1, np.float32)

            def f(x: NDArray[np.float64]) -> NDArray[np.float64]:
                return np.asarray(self._values(x[None, :], one)[0], np.float64)

            x = np.linspace(0.0, 2 * self.vmax, (1 << 18) + 1)
            fx = f(x)
            ch = np.flatnonzero(fx[1:] != fx[:-1])
            lo, hi, before = x[ch], x[ch + 1], fx[ch]
            for _ in range(60):
                mid = (lo + hi) / 2
                left = f(mid) == before
                lo, hi = np.where(left, mid, lo), np.where(left, hi, mid)
            out = (hi, np.concatenate([fx[:1], fx[ch + 1]]))
        self._steps = out
        return out

    def decode(self, codes: ArrayLike) -> NDArray[np.float64]:
        """Unscaled value ``v`` of every code."""
        raise NotImplementedError

    def _values(self, w2: NDArray, s: NDArray[np.float32]) -> NDArray:
        """Unscaled quantized values of ``w2`` at per-row scales ``s``."""
        return self.decode(self._codes(w2, s))

    def _errors(self, w2: NDArray, ratios: NDArray[np.float64]) -> NDArray[np.float64]:
        """Squared error per row (columns: ``ratios``) under this quantizer, by brute force."""
        m = scales.max_abs(w2)
        out = np.empty((w2.shape[0], ratios.size))
        for k, a in enumerate(ratios):
            s = scales._finish(m * a / self.vmax, m)
            d = w2 - self._values(w2, s) * s[:, None]
            out[:, k] = np.einsum("ij,ij->i", d, d)
        return out

    def _search(self, w2: NDArray, method: str) -> NDArray[np.float32]:
        """The scale per row before the storage format: ``max``, ``pow2`` or the searched
        least-squared-error scale (``mse``)."""
        lv = self.levels()
        if method != "mse":
            return scales.choose_scale(w2, method, self.vmax)
        if lv is not None:
            return scales.scale_mse(w2, lv, values=self._values)
        # No nearest-rounding codebook: the same three stages, each candidate quantized.
        alpha = scales.mse_ratios()
        starts = scales.local_minima(self._errors(w2, alpha), scales.STARTS)
        step = float(np.log2(alpha[0] / alpha[1]))
        fine = np.exp2(np.linspace(-step, step, scales.FINE_POINTS // 2 + 1))
        best, _ = scales.refine_windows(w2, starts, alpha, fine, self._errors)
        m = scales.max_abs(w2)
        s = scales._finish(m * best / self.vmax, m)
        return scales.polish(w2, s, self._values, nearest=False)

    def stored_scales(self, w2: NDArray, method: str,
                      scale_format: str = scale_formats.DEFAULT) -> scale_formats.StoredScales:
        """Scales per row of ``w2`` as ``scale_format`` stores them: the searched scale moved
        to the representable value with the least error near it (``max``/``pow2``: the
        nearest one at or above it, so nothing clips that did not)."""
        fmt = scale_formats.get(scale_format)
        m = scales.max_abs(w2)
        thr, lv = self.steps() if method == "mse" else (np.zeros(0), np.zeros(1))
        # uneven step functions (not a uniform integer grid, or not nearest rounding): the
        # grid search misses 0.2-2 dB on rows of 300 (fp8, csd, asd K=3); the sweep does not
        nearest = self.levels() is not None
        dense = thr.size > 100 and self.name != "int"
        if method == "mse" and scales.exact_rows(w2.shape[0], w2.shape[1], thr.size, nearest,
                                                   dense):
            # small rows (or a dense codebook): the exact optimum, and the format's values
            # chosen on the exact error
            sweeps = []
            rows_per = max(1, scales.SWEEP_BLOCK // max(w2.shape[1] * thr.size, 1))
            s = np.empty(w2.shape[0])
            for r0 in range(0, w2.shape[0], rows_per):
                sw = scales.Sweep(w2[r0:r0 + rows_per], thr, lv, self.vmax)
                s[r0:r0 + rows_per] = sw.optimum()[0]
                sweeps.append((r0, sw))
            s = np.where(m > 0, s, 1.0)
            return scale_formats.fit_exact(fmt, w2, s, sweeps)
        s = np.where(m > 0, self._search(w2, method), 1.0)  # an all-zero row: scale 1
        return scale_formats.fit(fmt, w2, s, self._values if method == "mse" else None)

    def _scales(self, w2: NDArray, method: str,
                scale_format: str = scale_formats.DEFAULT) -> NDArray[np.float32]:
        """The decoded scales of :meth:`stored_scales`."""
        return self.stored_scales(w2, method, scale_format).scale

    def quantize(
        self,
        w: ArrayLike,
        granularity: str = "channel",
        scale: str = "mse",
        channel_axis: int = 0,
        fixed_scale: NDArray[np.float32] | scale_formats.StoredScales | None = None,
        scale_format: str = scale_formats.DEFAULT,
    ) -> QuantResult:
        """Quantize ``w``; ``fixed_scale`` (one per row of the granularity, best as
        :meth:`stored_scales` gave it; an array is stored in ``scale_format``) skips the
        search."""
        a = np.asarray(w)
        if a.dtype.kind != "f":
            raise ValueError(f"weights must be floating point, got {a.dtype}")
        if a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float32)
        if a.size == 0:
            raise ValueError("empty tensor")
        axis = channel_axis % a.ndim if a.ndim else 0
        w2 = scales.rows(a, granularity, axis)
        if fixed_scale is None:
            stored = self.stored_scales(w2, scale, scale_format)
        elif isinstance(fixed_scale, scale_formats.StoredScales):
            stored = fixed_scale
        else:
            stored = scale_formats.get(scale_format).encode(np.asarray(fixed_scale))
        s = stored.scale
        codes2 = self._codes(w2, s)
        v2 = self.decode(codes2)
        deq2 = (v2 * s[:, None].astype(np.float64)).astype(np.float32)
        if granularity == "channel" and a.ndim:
            moved = np.moveaxis(a, axis, 0).shape
            codes = np.moveaxis(codes2.reshape(moved), 0, axis)
            deq = np.moveaxis(deq2.reshape(moved), 0, axis)
        else:
            codes, deq = codes2.reshape(a.shape), deq2.reshape(a.shape)
        size = packing.SizeReport(count=a.size, code_bits=self.code_bits, scale_count=s.size,
                                  scale_bits=stored.width,
                                  scale_header_bits=stored.bits - stored.width * s.size)
        return QuantResult(
            scheme=self.name,
            options=dict(self.options),
            dequant=np.ascontiguousarray(deq),
            codes=np.ascontiguousarray(codes),
            scale=s,
            granularity=granularity,
            channel_axis=axis,
            code_bits=self.code_bits,
            size=size,
            stored_scales=stored,
        )


class _GridScheme(Scheme):
    """Schemes on a :class:`~asd.asdq.GridCodebook` (ASD, power of two, integers)."""

    fmt: AsdFormat | IntFormat

    def levels(self) -> NDArray[np.float64] | None:
        return self.fmt.codebook.positive_values()

    def _codes(self, w2: NDArray, s: NDArray[np.float32]) -> NDArray[np.int64]:
        return self.fmt.codebook.map(w2, s, self._code_table())

    def _values(self, w2: NDArray, s: NDArray[np.float32]) -> NDArray:
        # One table lookup per weight: the level's value, not its code.
        table = self.fmt.codebook.values().astype(w2.dtype)
        return self.fmt.codebook.map(w2, s, table)

    def _code_table(self) -> NDArray[np.int64]:
        return self.fmt.encode(self.fmt.codebook.signed_levels)

    def decode(self, codes: ArrayLike) -> NDArray[np.float64]:
        return self.fmt.to_float(self.fmt.decode(codes))


class AsdScheme(_GridScheme):
    name = "asd"
    fmt: AsdFormat

    def __init__(self, digits: int = 2, exp_bits: int = 3, conversion: str = "nearest") -> None:
        if conversion not in ("nearest", "csd"):
            raise ValueError(f"conversion must be 'nearest' or 'csd', got {conversion!r}")
        super().__init__(digits=digits, exp_bits=exp_bits, conversion=conversion)
        self.fmt = AsdFormat(digits, exp_bits)
        self.code_bits = self.fmt.code_bits
        self.vmax = self.fmt.vmax
        self.conversion = conversion

    def _codes(self, w2: NDArray, s: NDArray[np.float32]) -> NDArray[np.int64]:
        if self.conversion == "nearest":
            return super()._codes(w2, s)
        x = w2.astype(np.float64) / s[:, None].astype(np.float64)
        return self.fmt.encode(csd_round_int(x, self.fmt))

    def _values(self, w2: NDArray, s: NDArray[np.float32]) -> NDArray:
        if self.conversion == "nearest":
            return super()._values(w2, s)
        return Scheme._values(self, w2, s)

    def levels(self) -> NDArray[np.float64] | None:
        # The published conversion is not nearest rounding: its MSE needs the brute force.
        return super().levels() if self.conversion == "nearest" else None


class PotScheme(_GridScheme):
    name = "pot"

    def __init__(self, exp_bits: int = 3) -> None:
        super().__init__(exp_bits=exp_bits)
        self.fmt = pot_format(exp_bits)
        self.code_bits = self.fmt.code_bits
        self.vmax = self.fmt.vmax


class IntScheme(_GridScheme):
    name = "int"

    def __init__(self, bits: int = 8) -> None:
        super().__init__(bits=bits)
        self.fmt = IntFormat(bits)
        self.code_bits = self.fmt.code_bits
        self.vmax = self.fmt.vmax


class ShiftCnnScheme(Scheme):
    name = "shiftcnn"

    def __init__(self, terms: int = 2, exp_bits: int = 3) -> None:
        super().__init__(terms=terms, exp_bits=exp_bits)
        self.fmt = ShiftCnnFormat(terms, exp_bits)
        self.code_bits = self.fmt.code_bits
        self.vmax = self.fmt.vmax

    def _codes(self, w2: NDArray, s: NDArray[np.float32]) -> NDArray[np.int64]:
        x = w2.astype(np.float64) / s[:, None].astype(np.float64)
        return self.fmt.quantize(x)[0]

    def decode(self, codes: ArrayLike) -> NDArray[np.float64]:
        return self.fmt.to_float(self.fmt.decode(codes))


class FpScheme(Scheme):
    name = "fp"

    def __init__(self, format: str = "e4m3") -> None:  # noqa: A002 - the CLI's word
        super().__init__(format=format)
        self.fmt: Minifloat = parse_format(format, saturate=True)
        self.code_bits = self.fmt.code_bits
        self.vmax = self.fmt.vmax

    def levels(self) -> NDArray[np.float64]:
        # Nearest rounding with ties to even: the search's ties-away rule differs only on ties.
        return self.fmt.positive_values()

    def _codes(self, w2: NDArray, s: NDArray[np.float32]) -> NDArray[np.int64]:
        x = w2.astype(np.float64) / s[:, None].astype(np.float64)
        return self.fmt.encode(x)

    def decode(self, codes: ArrayLike) -> NDArray[np.float64]:
        return self.fmt.decode(codes)


_FACTORIES: dict[str, Callable[..., Scheme]] = {
    "asd": AsdScheme,
    "asd2": lambda **o: AsdScheme(**{"digits": 2, "exp_bits": 3, **o}),
    "pot": PotScheme,
    "int": IntScheme,
    "int8": lambda **o: IntScheme(**{"bits": 8, **o}),
    "int7": lambda **o: IntScheme(**{"bits": 7, **o}),
    "int6": lambda **o: IntScheme(**{"bits": 6, **o}),
    "int4": lambda **o: IntScheme(**{"bits": 4, **o}),
    "shiftcnn": ShiftCnnScheme,
    "fp": FpScheme,
    "fp8-e4m3": lambda **o: FpScheme(**{"format": "e4m3", **o}),
    "fp8-e5m2": lambda **o: FpScheme(**{"format": "e5m2", **o}),
}


def available() -> list[str]:
    return sorted(_FACTORIES)


def get_scheme(name: str, **options: Any) -> Scheme:
    """The quantizer for ``name`` with ``options``; unknown names or options raise ValueError."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown scheme {name!r}; known: {', '.join(available())}"
        ) from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise ValueError(f"bad options for scheme {name!r}: {exc}") from None
