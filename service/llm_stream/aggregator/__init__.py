"""The aggregator role: results into OpenAI batch files and batch objects."""
