"""mnist's data and a person's digits: the MNIST files, photo preprocessing, synthetic handwriting."""
