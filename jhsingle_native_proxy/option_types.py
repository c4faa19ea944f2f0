"""Command-line value types shared by the option modules."""

from __future__ import annotations

import math

import click


class Seconds(click.FloatRange):
    """A duration in seconds: a finite number within the range.

    `float()` reads `nan` and `inf`, which a float range lets through (NaN compares false with
    every bound): a `nan` timeout would make every wait end at once or never.
    """

    name = "seconds"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number
