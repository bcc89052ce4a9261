"""Artifacts: writing .keras, SavedModel, LiteRT and ONNX with parity checks, and reading and running them."""
