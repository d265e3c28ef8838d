"""The git pre-commit hook that enforces exclusive file reservations at commit time.

``git`` (plumbing: the hooks directory, the staged paths), ``install`` (writing the hook) and
``check`` (the verdict on the staged paths) are services: no click in them, and nothing that
imports MCP, because the check runs on every commit. Import the submodules directly.
"""
