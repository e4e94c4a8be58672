"""Subcommand modules of the `tempest-jax` command line (see `tempest_jax.cli`)."""
