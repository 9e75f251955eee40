"""specact: speculative tool actions -- a cheap proposer, a learned verifier, a strong fallback."""

import importlib

__version__ = "0.1.0"
__all__ = ["load_results"]


def __getattr__(name: str):
    # Lazy: `import specact` stays light (training subprocesses import it) and the report stack loads on
    # use. Through importlib on purpose: a stage's key hashes every module its notebook's imports reach,
    # and every `specact.x` import runs this file -- a plain import here would tie every stage to the
    # report code, so editing a figure would re-run training.
    if name == "load_results":
        return importlib.import_module("specact.compare").load_results
    raise AttributeError(f"module 'specact' has no attribute {name!r}")
