"""The zoo's registry of model names (`cliutil.registry.Registry`):
each builder module registers its builders on import."""

from cliutil.registry import Registry

MODELS = Registry("model name")
