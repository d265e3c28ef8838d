"""The hub: one process serving every stdio agent of a project, and the relays agents launch.

Kept apart from ``jetpack.server`` so that a relay imports neither the MCP SDK nor the services.
"""
