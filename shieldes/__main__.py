from shieldes.cli.main import main

main()
