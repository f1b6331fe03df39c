"""Kafka plumbing: the consume loop, record decoding, publishers, topics and commits."""
