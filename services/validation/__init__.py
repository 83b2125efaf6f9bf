"""Validation service: normalized reading batches in, valid readings out, every failure a
dead letter with a reason code (range, NaN/inf, future/stale/out-of-order/duplicate
timestamps, bad quality, unknown sensor or machine)."""
