"""The OpenAI Files and Batches API over HTTP, in front of the stream (``llm-stream gateway``)."""
