"""Advisory file reservations: who is about to touch which files, with one glob matcher for all."""
