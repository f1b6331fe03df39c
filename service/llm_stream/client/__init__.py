"""The client library: submit batches and read their status."""
