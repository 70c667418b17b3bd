"""Assertions for the practice checks: each failure says what was expected and what came back.

A learner reads these messages on the `practice check` screen, so they name the quantity in words
("the done loss"), show both values in full with their shapes and dtypes, and never stop at
"Not equal to tolerance".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def describe(value: Any, limit: int = 12) -> str:
    """A value as a learner should see it: a number, or an array with its shape and dtype."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        kind = f"tensor of shape {tuple(value.shape)}, {str(value.dtype).removeprefix('torch.')}"
        array = value.numpy()
    elif isinstance(value, np.ndarray):
        kind, array = f"array of shape {value.shape}, {value.dtype}", value
    elif isinstance(value, float):
        return f"{value:.6g}"
    else:
        return repr(value)
    if array.ndim == 0:
        number = array.item()
        shown = f"{number:.6g}" if isinstance(number, float) else repr(number)
        return f"{shown} ({kind})"
    flat = array.reshape(-1)
    shown = np.array2string(flat[:limit], precision=6, separator=", ", max_line_width=90)
    more = f" ... {flat.size - limit} more" if flat.size > limit else ""
    return f"{shown}{more} ({kind})"


def expect_close(got: Any, expected: Any, what: str, rtol: float = 1e-5, atol: float = 1e-6):
    """`got` must equal `expected` (same shape, values within rtol/atol)."""
    got_array, expected_array = _array(got, what), _array(expected, "the expected value")
    if got_array.shape != expected_array.shape:
        raise AssertionError(
            f"{what}: expected shape {expected_array.shape}, got {describe(got)}\n"
            f"  expected {describe(expected_array)}"
        )
    if not np.allclose(got_array, expected_array, rtol=rtol, atol=atol, equal_nan=True):
        raise AssertionError(
            f"{what}:\n  expected {describe(expected_array)}\n  got      {describe(got)}"
        )


def expect_equal(got: Any, expected: Any, what: str) -> None:
    """`got == expected`, for plain values, lists, tensors and arrays."""
    same = (
        np.array_equal(_array(got, what), np.asarray(expected))
        if isinstance(got, torch.Tensor | np.ndarray)
        else got == expected
    )
    if not same:
        raise AssertionError(
            f"{what}:\n  expected {describe(expected)}\n  got      {describe(got)}"
        )


def expect_shape(got: Any, shape: tuple, what: str, dtype: Any = None) -> None:
    """A tensor of `shape` (and `dtype`, if given)."""
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(shape):
        raise AssertionError(
            f"{what}: expected a tensor of shape {tuple(shape)}, got {describe(got)}"
        )
    if dtype is not None and got.dtype != dtype:
        raise AssertionError(f"{what}: expected dtype {dtype}, got {describe(got)}")


def expect(condition: bool, message: str) -> None:
    """A check that reads as a sentence when it fails."""
    if not condition:
        raise AssertionError(message)


def _array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return (
            value.detach().cpu().double().numpy()
            if value.is_floating_point()
            else value.cpu().numpy()
        )
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise AssertionError(f"{what}: expected numbers, got {describe(value)}") from None
