from attnlab.compare.cli import main

main()
