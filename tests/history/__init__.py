"""`make history`: many clients record every operation against `items serve` while faults
are injected, and a checker proves over the whole history that no guarantee was broken
(in the manner of Jepsen's checkers). See `__main__.py` to run it, `checker.py` for the
rules, README's RELIABILITY for the latest figures."""
