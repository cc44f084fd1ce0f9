"""The bundled corpora: data files that ship in the wheel, found with `importlib.resources`.

``regression.lz4`` and ``fuzzed.lz4`` are corpus bundles (`fuzz.corpus`), packed from the
text-form cases in ``scenarios/`` and ``fuzzed/``; ``examples/*.case`` are small hand-written
cases in the text form of `fuzz.case`. ``README.md`` documents the formats. This package holds
no code; it is a package only so that the files are installed with vmafuzz and located the
same way from a wheel and from a source checkout.
"""

__all__: list[str] = []
