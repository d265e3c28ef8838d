from jetpack.cli.main import main

main()
