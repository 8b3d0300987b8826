"""The harness: one module per DVC stage, each with a ``main(argv)``, behind ``interir-bench``."""
