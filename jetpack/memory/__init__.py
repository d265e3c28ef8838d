"""Semantic memory: embeddings, vector search and recall of what agents learned."""
