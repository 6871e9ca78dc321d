import gc

gc.disable()  # until the command has its database: see shieldes.cli.main.main

from shieldes.cli.main import main  # noqa: E402

main()
