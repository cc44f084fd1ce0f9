"""libFuzzer/atheris targets: executable scripts named ``*_fuzzer.py`` (see each one's docstring)."""
