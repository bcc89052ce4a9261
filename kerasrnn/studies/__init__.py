"""Many fits compared: bench, sweep, search (KerasTuner), their tables and report headers."""
