from ultrachat.cli import main

main()
