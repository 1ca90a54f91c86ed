"""``python -m hilt.pipelines.cli``: the same as the ``hilt`` command."""

from hilt.pipelines.cli import main

main()
