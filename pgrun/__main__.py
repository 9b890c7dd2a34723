"""``python -m pgrun``: the same as the ``pgrun`` command."""

from pgrun.commands.train import main

main()
