"""A fit: Keras' fit around a task, its callbacks, candidates, devices, precision and fault injection."""
