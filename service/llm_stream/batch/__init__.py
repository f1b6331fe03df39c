"""The batch domain: what a request line, an input file and a batch object are."""
