"""The web dashboard: a Starlette app over the DataLayer, pushed live from the events table."""
