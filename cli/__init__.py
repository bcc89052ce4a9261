"""The `kerasrnn` command line (installed as the package `kerasrnn_cli`)."""
