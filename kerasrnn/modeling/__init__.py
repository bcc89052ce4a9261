"""The Keras model: the functional builder, the toolkit's layers and metrics."""
