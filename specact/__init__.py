"""specact: speculative tool actions -- a cheap proposer, a learned verifier, a strong fallback."""

__version__ = "0.1.0"
__all__ = ["load_results"]


def __getattr__(name: str):
    # Lazy: `import specact` stays light (training subprocesses import it); the report stack loads on use.
    if name == "load_results":
        from specact.compare import load_results

        return load_results
    raise AttributeError(f"module 'specact' has no attribute {name!r}")
