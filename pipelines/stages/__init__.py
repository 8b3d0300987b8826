"""One thin module per DVC stage: arguments in, one library call, a ``main(argv) -> int``."""
