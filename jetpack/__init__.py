"""Jetpack: an MCP coordination server for swarms of AI coding agents."""

__version__ = "0.1.0"
