"""Curation: reviewers' judgements of batch lines (a compacted topic), the exports of what
passed (fine-tuning JSONL, Label Studio tasks, Parquet) and the Label Studio round trip."""
