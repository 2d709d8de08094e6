"""Operator commands (`items rebuild`, `verify`, `status`, `dead-letters`): what they do,
over the stores' adapters. Human-readable output is the CLI's (app/cli/)."""
