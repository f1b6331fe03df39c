"""The batch domain: request lines, input files, result lines, batch statuses and objects."""
