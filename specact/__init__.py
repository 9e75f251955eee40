"""specact: speculative tool actions -- a cheap proposer, a learned verifier, a strong fallback."""

__version__ = "0.1.0"
