"""The crashloop commands (`tootstack crashloop ...`) and the synthetic outage traces of the tests and the benchmark."""
