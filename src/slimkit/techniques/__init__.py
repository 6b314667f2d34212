"""Techniques: each transforms a model and is configured by a small frozen dataclass.

Each package exposes one ``TECHNIQUE`` (``slimkit.core.technique.Technique``): its config, its
apply function and the search dimensions it offers. Techniques never import each other; they share
the core (data, training engine, measurement). ``slimkit.plugins`` registers them.
"""
