"""The role runtime: the skeleton every consuming role (worker, aggregator, notifier) shares."""
