"""NumPy reference kernels: readable, written from the formulas, the oracle of every test.

Each function has the signature of its compiled twins (see fastdl/_registry.py)."""
