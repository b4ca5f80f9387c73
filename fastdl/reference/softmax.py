"""Softmax, NumPy reference (placeholder)."""
