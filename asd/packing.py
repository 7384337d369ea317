"""Packing fixed-width codes into bytes, and size accounting.

Layout: codes are unsigned integers of ``bits`` bits each, laid end to end in order (C order of
the tensor), each code most significant bit first, the first code at the most significant bit
of byte 0; the last byte is padded with zero bits.  So ``n`` codes take ``ceil(n*bits/8)``
bytes, and with ``bits == 8`` the bytes are the codes themselves.  This is
``bitstring.Array(f"uint{bits}", codes).tobytes()``; byte-multiple widths use an equivalent
numpy path (big-endian words) because it is faster, and the tests check the two agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import bitstring
import numpy as np
from numpy.typing import ArrayLike, NDArray


def _check(codes: NDArray, bits: int) -> NDArray[np.int64]:
    if not 1 <= bits <= 32:
        raise ValueError(f"code width must be 1..32 bits, got {bits}")
    c = np.asarray(codes).reshape(-1)
    if c.size and (c.min() < 0 or int(c.max()) >= (1 << bits)):
        raise ValueError(f"a code does not fit in {bits} bits")
    return c.astype(np.int64, copy=False)


def packed_size(count: int, bits: int) -> int:
    """Bytes that ``count`` codes of ``bits`` bits take."""
    return (count * bits + 7) // 8


def pack(codes: ArrayLike, bits: int) -> NDArray[np.uint8]:
    """Codes -> packed bytes (uint8 array) in the layout above."""
    c = _check(np.asarray(codes), bits)
    if bits % 8 == 0:
        dt = {8: ">u1", 16: ">u2", 24: None, 32: ">u4"}[bits]
        if dt is not None:
            return np.frombuffer(c.astype(dt).tobytes(), dtype=np.uint8).copy()
    return pack_bitstring(c, bits)


def pack_bitstring(codes: ArrayLike, bits: int) -> NDArray[np.uint8]:
    """The reference packer: bitstring's fixed-width array."""
    c = _check(np.asarray(codes), bits)
    arr = bitstring.Array(f"uint{bits}", c.tolist())
    return np.frombuffer(arr.tobytes(), dtype=np.uint8).copy()


def unpack(data: ArrayLike, bits: int, count: int) -> NDArray[np.int64]:
    """Packed bytes -> ``count`` codes; the byte length must match exactly."""
    raw = np.asarray(data, dtype=np.uint8).reshape(-1)
    if raw.size != packed_size(count, bits):
        raise ValueError(
            f"{raw.size} bytes cannot hold exactly {count} codes of {bits} bits "
            f"(expected {packed_size(count, bits)})"
        )
    if bits in (8, 16, 32):
        dt = {8: ">u1", 16: ">u2", 32: ">u4"}[bits]
        return np.frombuffer(raw.tobytes(), dtype=dt).astype(np.int64)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    dtype = f"uint{bits}"
    data = raw.tobytes()
    # bitstring 5 spells it from_bytes; 4.x took bytes in the constructor.
    arr = (bitstring.Array.from_bytes(dtype, data) if hasattr(bitstring.Array, "from_bytes")
           else bitstring.Array(dtype, data))
    # Padding bits can form extra whole items at the end; they are not codes.
    return np.asarray(arr.tolist()[:count], dtype=np.int64)


@dataclass
class SizeReport:
    """Stored bits of one tensor: codes, scales and float32 side data (biases)."""

    count: int  # weights (or elements)
    code_bits: int  # bits per code
    scale_count: int
    scale_bits: int = 16  # bits of each scale's own field (asd.scale_formats; fp16: 16)
    extra_bits: int = 0  # biases or other arrays stored alongside
    scale_header_bits: int = 0  # the tensor's shared scale fields and padding

    @property
    def scales_bits(self) -> int:
        return self.scale_count * self.scale_bits + self.scale_header_bits

    @property
    def payload_bits(self) -> int:
        # Codes are stored packed, so padding to a byte is real storage and is counted.
        return 8 * packed_size(self.count, self.code_bits)

    @property
    def total_bits(self) -> int:
        return self.payload_bits + self.scales_bits + self.extra_bits

    @property
    def bits_per_weight(self) -> float:
        return (self.payload_bits + self.scales_bits) / max(self.count, 1)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(payload_bits=self.payload_bits, scales_bits=self.scales_bits,
                 total_bits=self.total_bits,
                 bits_per_weight=self.bits_per_weight)
        return d
