"""tempest-jax: a JAX/Flax Rainbow-style learner for Atari Tempest."""

__version__ = "0.1.0"
