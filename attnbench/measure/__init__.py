"""Measurement, one concern per module: timing, memory, flops, numerics, calibration."""
