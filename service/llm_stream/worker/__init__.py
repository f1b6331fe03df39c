"""The worker role: requests from Kafka through the engine to results."""
