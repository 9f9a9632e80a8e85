from kinase_cli.main import main

main()
