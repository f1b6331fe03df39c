"""The inference engine boundary and its vLLM implementation."""
