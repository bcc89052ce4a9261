"""The toolkit's own path on the torch backend: fused kernels, its training step and loop, the reference loops."""
