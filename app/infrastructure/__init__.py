"""Adapters: PostgreSQL (write model and event log), Redis (views), settings, wiring."""
