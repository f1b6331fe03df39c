"""The notifier role: signed webhooks when a batch reaches a terminal status."""
