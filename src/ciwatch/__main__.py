"""`python -m ciwatch` runs the command line."""

from ciwatch.cli import main

main()
