from pgrun.cli import main

main()
