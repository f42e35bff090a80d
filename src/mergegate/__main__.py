from mergegate.cli import main

main()
