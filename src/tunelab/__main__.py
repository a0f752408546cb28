from tunelab.cli.main import main

main()
