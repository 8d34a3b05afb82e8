"""Benchmarks that print their figures: network efficiency, data speed, predict's memory and
speed, the GPU precision check, the default model's scores. Each module is a command,
`python -m derain.benchmarks.<name> --help`; the tests import their functions from here."""
