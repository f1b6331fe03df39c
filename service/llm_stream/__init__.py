"""llm-stream: Kafka as an LLM batch-inference bus built on vLLM."""

__version__ = "0.1.0"
