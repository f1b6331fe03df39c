"""Allow ``python -m llm_stream`` as an alias of the ``llm-stream`` console script."""

from llm_stream.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
